"""``python -m golem_apps.serve MODULE[:ATTR] requestor|provider PORT``: serve an app.

The role and port come last, so that a Docker ENTRYPOINT
``python -m golem_apps.serve myapp --host 0.0.0.0 --work-dir /golem/work``
plus the node's command ``requestor 50005`` just works. Unknown flags after the
port are ignored with a warning (a node in development mode appends some).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

from ._cli import Parser, configure_logging, load_app
from ._exceptions import ConfigError, UsageError

PROG = "golem_apps.serve"
ROLES = ("requestor", "provider")
#: After SIGTERM/SIGINT or Shutdown, how long a provider may take to stop before it is cut
#: off: the process is gone within 2 s, its descendants killed included.
PROVIDER_GRACE_SECONDS = 1.5

log = logging.getLogger("golem_apps.serve")


def build_parser(prog: str = f"python -m {PROG}") -> argparse.ArgumentParser:
    """The command line of ``python -m golem_apps.serve`` (``prog`` names it in usage lines)."""
    parser = Parser(
        prog=prog,
        description="Serve an app's requestor or provider, as a Golem node starts it: "
        "the role and the port come last (appended to a Docker ENTRYPOINT).",
    )
    parser.add_argument(
        "app", metavar="MODULE[:ATTR]", help="module of the app; ATTR defaults to the role"
    )
    parser.add_argument("role", choices=ROLES, help="which side of the app to serve")
    parser.add_argument("port", type=int, help="port to listen on (0 = any free port)")
    parser.add_argument("--work-dir", default="/golem/work", help="default: /golem/work")
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="of golem_apps' loggers and the app's (default: WARNING; other libraries: WARNING)",
    )
    parser.add_argument(
        "--tracebacks",
        action="store_true",
        help="log the traceback of each handler failure, whatever the level "
        "(the local runner's children do)",
    )
    return parser


async def _serve_requestor(app: object, args: argparse.Namespace) -> int:
    from ._requestor import Requestor
    from .server._requestor import serve_requestor

    if not isinstance(app, Requestor):
        raise UsageError(f"{args.app} is a {type(app).__name__}, not a golem_apps.Requestor")
    async with serve_requestor(
        app, work_dir=args.work_dir, host=args.host, port=args.port
    ) as server:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, server.request_shutdown)
        print(f"requestor serving on {args.host}:{server.port}", flush=True)
        await server.wait_shutdown()
    return 0


async def _serve_provider(app: object, args: argparse.Namespace) -> int:
    from ._provider import Provider
    from .server._provider import serve_provider

    if not isinstance(app, Provider):
        raise UsageError(f"{args.app} is a {type(app).__name__}, not a golem_apps.Provider")
    async with serve_provider(
        app, work_dir=args.work_dir, host=args.host, port=args.port
    ) as server:
        loop = asyncio.get_running_loop()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # A plain signal handler, not the loop's: it runs even while a
            # handler blocks the event loop, and arms the hard exit at once.
            _arm_hard_exit(1)
            loop.call_soon_threadsafe(server.cancel)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)
        print(f"provider serving on {args.host}:{server.port}", flush=True)

        async def deadline_on_stop() -> None:
            # Shutdown lets a cancelled computation answer first; one that
            # never answers must not keep the process alive either.
            await server.wait_stop_requested()
            _arm_hard_exit(1)

        watcher = asyncio.ensure_future(deadline_on_stop())
        try:
            code = await server.wait()
        finally:
            watcher.cancel()
        # Stopping may hang (a compute that ignores its cancellation, a stuck
        # lifespan): whatever happens, the process ends after the grace period.
        _arm_hard_exit(code or 1)
    return code


_deadline_lock = threading.Lock()
_deadline: threading.Timer | None = None


def _arm_hard_exit(code: int) -> None:
    """Start (once) a timer thread that ends the process after the grace period."""
    global _deadline
    with _deadline_lock:
        if _deadline is None:
            _deadline = threading.Timer(PROVIDER_GRACE_SECONDS, _hard_exit, (code,))
            _deadline.daemon = True
            _deadline.start()


def _hard_exit(code: int) -> None:
    log.error("provider did not stop within %.1f s; exiting", PROVIDER_GRACE_SECONDS)
    _exit(code)


def _descendants() -> list[int]:
    """Pids of this process's children and their children (Linux /proc; else none)."""
    found: list[int] = []
    parents = [os.getpid()]
    while parents:
        parent = parents.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")  # noqa: PTH208 - no pathlib needed
        except OSError:
            continue
        for thread in threads:
            try:
                with open(f"/proc/{parent}/task/{thread}/children") as file:  # noqa: PTH123
                    children = [int(pid) for pid in file.read().split()]
            except (OSError, ValueError):
                continue
            found.extend(children)
            parents.extend(children)
    return found


def _exit(code: int) -> NoReturn:
    """End the process now: no interpreter teardown, and no child process left behind.

    Abandoned worker threads must not keep it alive, and what a handler
    started (a renderer, a shell) must not outlive it.
    """
    for pid in _descendants():  # collected first: killing a parent reparents its children
        with contextlib.suppress(OSError):  # gone already
            os.kill(pid, signal.SIGKILL)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run the command; returns the exit code. ``prog``: its name in usage and error lines."""
    parser = build_parser(prog or f"python -m {PROG}")
    try:
        args, extra = parser.parse_known_args(argv)
        configure_logging(args.log_level, args.app)
        if args.tracebacks:
            logging.getLogger("golem_apps.server.tracebacks").setLevel(logging.DEBUG)
        if extra:
            log.warning("ignoring unknown arguments: %s", " ".join(extra))
        app = load_app(args.app, args.role)
        serve = _serve_requestor if args.role == "requestor" else _serve_provider
        return asyncio.run(serve(app, args))
    except (UsageError, ConfigError) as exc:
        print(f"{prog or PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


#: How the command ends the process (``golem-apps serve`` too): skip the
#: interpreter's teardown, since a provider is paid per subtask and an abandoned
#: worker thread must not keep the process alive.
finish = _exit

if __name__ == "__main__":
    finish(main())
