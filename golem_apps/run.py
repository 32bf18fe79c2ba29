"""``python -m golem_apps.run APP``: run one task of an app on this machine, as a node would.

Any task-api app runs with ``--requestor-cmd CMD --provider-cmd CMD``: the
runner appends ``requestor PORT`` / ``provider PORT`` to CMD, as a node
appends them to an image's ENTRYPOINT.

Exit codes: 0 the task finished, 1 it could not finish, 2 bad usage,
130 interrupted (Ctrl-C, SIGTERM, or the terminal closing: the task is
aborted and every child process stopped).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import anyio

from ._cli import Parser, configure_logging
from ._exceptions import UsageError

if TYPE_CHECKING:
    from .runner import Reporter

PROG = "golem_apps.run"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


_positive_int.__name__ = "positive integer"
_non_negative_int.__name__ = "non-negative integer"
_positive_float.__name__ = "positive number"


def build_parser(prog: str = f"python -m {PROG}") -> argparse.ArgumentParser:
    """The command line of ``python -m golem_apps.run`` (``prog`` names it in usage lines)."""
    parser = Parser(
        prog=prog,
        description="Run one task of a golem_apps app on this machine, as a Golem node would.",
        epilog="Exit codes: 0 done, 1 the task could not finish, 2 bad usage, 130 interrupted.",
    )
    parser.add_argument(
        "module",
        metavar="APP",
        nargs="?",
        help="the app: a module or file (path/to/app.py) defining requestor and provider, "
        "or MODULE:ATTR / FILE:ATTR naming an object that holds them (optional with both "
        "--requestor-cmd and --provider-cmd)",
    )
    parser.add_argument(
        "--requestor-cmd", metavar="CMD",
        help="start the requestor with CMD + 'requestor PORT' ({work_dir}: its work dir)",
    )  # fmt: skip
    parser.add_argument(
        "--provider-cmd", metavar="CMD",
        help="start each provider with CMD + 'provider PORT' ({work_dir}: its work dir)",
    )  # fmt: skip
    parser.add_argument(
        "--params", default="{}", metavar="JSON|@FILE", help="task params: a JSON object or @file"
    )
    parser.add_argument(
        "--input", action="append", default=[], metavar="FILE", help="a task input file (repeat)"
    )
    parser.add_argument(
        "--providers", type=_positive_int, metavar="N", help="providers at once (2)"
    )
    parser.add_argument(
        "--cluster", metavar="tcp://HOST:PORT|local:N",
        help="run the providers on a Dask cluster: its scheduler, or N local workers "
        "(each worker is one provider; needs golem_apps[dask])",
    )  # fmt: skip
    parser.add_argument("--work-dir", metavar="DIR", help="default: a new temporary folder")
    parser.add_argument(
        "--subtask-timeout", type=_positive_float, metavar="S", help="kill a provider after S s"
    )
    parser.add_argument(
        "--heartbeat-timeout", type=_positive_float, metavar="S",
        help="replace a provider whose progress reports (ctx.progress) stop for S s",
    )  # fmt: skip
    parser.add_argument(
        "--max-subtasks", type=_non_negative_int, default=0, metavar="N",
        help="max_subtasks_count for CreateTask (0 = no limit)",
    )  # fmt: skip
    parser.add_argument(
        "--max-attempts", type=_positive_int, default=5, metavar="N",
        help="give up when one part failed N times (5)",
    )  # fmt: skip
    parser.add_argument(
        "--out", metavar="DIR", help="put the task's outputs here (hard links where possible)"
    )
    parser.add_argument(
        "--in-process", action="store_true",
        help="serve requestor and providers in this process (for debugging)",
    )  # fmt: skip
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="of golem_apps' loggers and the app's, here and in the children (WARNING); "
        "other libraries log at WARNING",
    )
    return parser


def parse_params(text: str) -> dict[str, Any]:
    """``--params``: a JSON object, or ``@path`` to a file holding one."""
    source = "--params"
    if text.startswith("@"):
        path = Path(text[1:])
        source = f"--params file {path}"
        try:
            text = path.read_text()
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{source} must be a JSON object, not {type(value).__name__}")
    return value


def check_commands(args: argparse.Namespace) -> None:
    """APP, or both commands; each command usable (UsageError naming the option)."""
    if args.module is None and (args.requestor_cmd is None or args.provider_cmd is None):
        raise UsageError(
            "the following arguments are required: APP (or both --requestor-cmd and --provider-cmd)"
        )
    if args.in_process and (args.requestor_cmd is not None or args.provider_cmd is not None):
        raise UsageError("--in-process serves APP: it takes no --requestor-cmd or --provider-cmd")
    from .runner._process import ServerCommand

    for option, text in (
        ("--requestor-cmd", args.requestor_cmd),
        ("--provider-cmd", args.provider_cmd),
    ):
        if text is not None:
            try:
                ServerCommand.parse(text, option)
            except ValueError as exc:
                raise UsageError(str(exc)) from None


async def _run(
    args: argparse.Namespace, params: dict[str, Any], reporter: Reporter, prog: str
) -> int:
    from .runner import TaskFailed, format_summary, run_task

    interrupted = False
    # The receiver stays installed until the clean-up is over: a second Ctrl-C
    # must not cut short the killing of the children.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with anyio.create_task_group() as tg:

            async def watch_signals() -> None:
                nonlocal interrupted
                async for _ in signals:
                    interrupted = True
                    tg.cancel_scope.cancel()

            tg.start_soon(watch_signals)
            try:
                result = await run_task(
                    args.module,
                    params=params,
                    inputs=args.input,
                    providers=args.providers,
                    cluster=args.cluster,
                    work_dir=args.work_dir,
                    out=args.out,
                    subtask_timeout=args.subtask_timeout,
                    heartbeat_timeout=args.heartbeat_timeout,
                    max_subtasks=args.max_subtasks,
                    max_attempts=args.max_attempts,
                    in_process=args.in_process,
                    log_level=args.log_level,
                    reporter=reporter,
                    requestor_cmd=args.requestor_cmd,
                    provider_cmd=args.provider_cmd,
                )
            except TaskFailed as exc:
                if exc.app_traceback:
                    print(f"{prog}: the app failed:\n{exc.app_traceback}", file=sys.stderr)
                print(f"{prog}: error: {exc}", file=sys.stderr)
                return EXIT_FAILED
            except ValueError as exc:
                print(f"{prog}: error: {exc}", file=sys.stderr)
                return EXIT_USAGE
            finally:
                tg.cancel_scope.cancel()  # stops the signal watcher
    if interrupted:
        print(f"{prog}: interrupted: task aborted, child processes stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    try:
        print(format_summary(result), flush=True)
    except BrokenPipeError:  # `| head` stopped reading: not an error of the run
        _discard_stdout()
    return EXIT_OK


def _discard_stdout() -> None:
    # What is still buffered for the closed pipe goes to /dev/null instead of
    # failing again (and printing a traceback) at the final flush.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run the command; returns the exit code. ``prog``: its name in usage and error lines."""
    usage, prog = prog or f"python -m {PROG}", prog or PROG
    try:
        args = build_parser(usage).parse_args(argv)
        check_commands(args)
        params = parse_params(args.params)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(args.log_level, args.module)
    try:
        from .runner import auto_reporter

        return anyio.run(_run, args, params, auto_reporter(), prog)
    except KeyboardInterrupt:  # a Ctrl-C before the signal watcher was up
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def finish(code: int) -> NoReturn:
    """End the process (``golem-apps run`` too) with ``code``, skipping the interpreter's teardown.

    Every child is gone by now; an --in-process compute ignoring ctx.cancelled
    must not keep the command alive.
    """
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    finish(main())
