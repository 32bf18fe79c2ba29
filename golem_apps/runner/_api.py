"""``run_task``: run one task of an app end to end on this machine, as a Golem node would."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager, ExitStack, suppress
from pathlib import Path
from typing import Any

import anyio
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from .._cli import check_run_apps, load_run_apps, role_spec
from .._client import RequestorClient
from .._exceptions import TaskFailed, UsageError
from .._provider import Provider
from .._requestor import Requestor
from ..constants import TASK_OUTPUTS_DIR
from ._journal import Journal, TaskRecord, load_task, save_task
from ._loop import Scheduler
from ._machines import LocalMachines, Machines
from ._nodes import InProcessNodes, Nodes, SubprocessNodes
from ._process import ServerCommand
from ._progress import Reporter, Stats
from ._status import StatusFeed
from ._summary import RunResult
from ._together import entered_in_turn, entered_together
from ._tracebacks import captured, find_in_logs
from ._workdir import (
    LOGS_DIR,
    REQUESTOR_DIR,
    check_inputs,
    copy_outputs,
    list_outputs,
    prepare_requestor,
)

#: How long AbortTask may take when a run ends early.
ABORT_TIMEOUT = 3.0


def _work_root(work_dir: str | Path | None, out: str | Path | None) -> Path:
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"the outputs folder {out} exists and is not a folder")
    if work_dir is None:
        return Path(tempfile.mkdtemp(prefix="golem_apps_run_"))
    root = Path(work_dir).absolute()
    if root.exists() and not root.is_dir():
        raise ValueError(f"the work dir {work_dir} exists and is not a folder")
    return root


def _prepare(root: Path, params: dict[str, Any], files: list[Path]) -> tuple[TaskRecord, bool]:
    """The work dir's unfinished task (resumed: True) or a new one, its folders laid out."""
    record = load_task(root)
    if record is not None and not record.ended:
        if record.params != params:
            raise ValueError(
                f"the work dir {root} holds the unfinished task {record.task_id} with other "
                "params: rerun with the same params to continue it, or use another work dir"
            )
        resumed = True
    else:
        record, resumed = TaskRecord(str(uuid.uuid4()), params), False
    try:
        prepare_requestor(root, record.task_id, [] if resumed else files)
        save_task(root, record)
    except OSError as exc:
        raise ValueError(f"cannot prepare the work dir {root}: {exc.strerror or exc}") from None
    return record, resumed


async def _end(root: Path, record: TaskRecord) -> None:
    # Finished, failed or aborted: a rerun on this work dir starts a new task.
    record.ended = True
    with suppress(OSError):  # the outcome stands either way
        await anyio.to_thread.run_sync(save_task, root, record)


async def _create(
    client: RequestorClient, root: Path, record: TaskRecord, resumed: bool, max_subtasks: int
) -> None:
    """CreateTask, unless the requestor has the task already (a resumed one)."""
    if not record.created:
        try:
            await client.create_task(record.task_id, record.params, max_subtasks)
        except GRPCError as exc:
            # An earlier run died after the requestor created the task, before it heard so.
            if not (resumed and exc.status is Status.ALREADY_EXISTS):
                raise TaskFailed(f"CreateTask refused: {exc.message}") from None
        except Exception as exc:
            raise TaskFailed(f"CreateTask failed: {type(exc).__name__}: {exc}") from None
        record.created = True
        await anyio.to_thread.run_sync(save_task, root, record)


def _copy_out(
    task_dir: Path, out: str | Path, files: list[Path]
) -> tuple[Path, list[Path]] | TaskFailed:
    """Copy the outputs ``files`` into ``out``; the TaskFailed to raise (returned) if it fails."""
    target = Path(out).absolute()
    try:
        return target, copy_outputs(task_dir, target, files)
    except OSError as exc:
        # The results are still in the work dir: say where.
        return TaskFailed(
            f"cannot copy the outputs to {out}: {exc.strerror or exc} "
            f"(they are in {task_dir / TASK_OUTPUTS_DIR})"
        )


def _load_apps(module: str | tuple[Requestor, Provider]) -> tuple[Requestor, Provider]:
    """The app's two sides, checked: ValueError (one line) when a run cannot work."""
    if not isinstance(module, str) and not (isinstance(module, tuple) and len(module) == 2):
        raise ValueError(f"expected an app spec or (requestor, provider), got {module!r}")
    try:
        if isinstance(module, str):
            return load_run_apps(module)
        return check_run_apps(*module, "the app")
    except UsageError as exc:
        raise ValueError(str(exc)) from None


def _check_options(providers: int | None, subtask_timeout: float | None, max_attempts: int) -> None:
    if providers is not None and providers < 1:
        raise ValueError(f"providers must be at least 1, got {providers}")
    if subtask_timeout is not None and subtask_timeout <= 0:
        raise ValueError(f"subtask_timeout must be positive, got {subtask_timeout:g}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")


def _commands(
    module: str | None,
    requestor_cmd: str | Sequence[str] | None,
    provider_cmd: str | Sequence[str] | None,
    python: str | None,
    log_level: str,
) -> tuple[ServerCommand, ServerCommand]:
    def command(given: str | Sequence[str] | None, option: str) -> ServerCommand:
        if given is None:
            assert module is not None
            spec = role_spec(module, option.removesuffix("_cmd"))
            return ServerCommand.serve(python or sys.executable, spec, log_level)
        if isinstance(given, str):
            return ServerCommand.parse(given, option)
        return ServerCommand.parse(shlex.join(given), option)

    return command(requestor_cmd, "requestor_cmd"), command(provider_cmd, "provider_cmd")


async def run_task(
    module: str | tuple[Requestor, Provider] | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    inputs: Sequence[str | Path] = (),
    providers: int | None = None,
    work_dir: str | Path | None = None,
    out: str | Path | None = None,
    subtask_timeout: float | None = None,
    max_subtasks: int = 0,
    max_attempts: int = 5,
    in_process: bool = False,
    log_level: str = "WARNING",
    python: str | None = None,
    reporter: Reporter | None = None,
    heartbeat_timeout: float | None = None,
    requestor_cmd: str | Sequence[str] | None = None,
    provider_cmd: str | Sequence[str] | None = None,
    cluster: str | None = None,
) -> RunResult:
    """Run one task of the app in ``module`` to completion and return what happened.

    ``module`` is a module name or a file path (``path/to/app.py``) defining
    ``requestor`` and ``provider``, or ``MODULE:ATTR`` / ``FILE:ATTR`` naming an
    object that holds them; with ``in_process=True`` it may also be the
    ``(requestor, provider)`` objects themselves. The app is imported and
    checked first (a Requestor with a task handler, a Provider with a compute
    handler): ValueError before any process starts.
    The runner plays the node: it lays out ``work_dir`` (default: a new temporary
    folder) with ``inputs`` in task_inputs, serves the requestor, CreateTask with
    ``params``, keeps up to ``providers`` (default 2) one-shot providers computing, ships
    resources and results, and verifies each result. A provider that fails,
    crashes or exceeds ``subtask_timeout`` seconds is killed and its subtask
    aborted; its part is computed again, up to ``max_attempts`` times.
    Providers stream their progress (``ctx.progress``) to ``reporter``; with
    ``heartbeat_timeout`` a provider that reported progress once and then stays
    silent that many seconds is flagged (``stalled``), killed and replaced.

    By default every app runs as a ``python -m golem_apps.serve MODULE --work-dir
    {work_dir}`` child process (``python`` is the interpreter, default this
    one). ``requestor_cmd`` and ``provider_cmd`` run any task-api app instead
    (``module`` may then be None): a command prefix, as an image's ENTRYPOINT,
    to which the runner appends ``requestor PORT`` / ``provider PORT``;
    ``{work_dir}`` in it becomes the server's work dir, which is also its
    current directory. A requestor that dies is restarted on its work dir.
    ``in_process=True`` serves both sides of ``module`` in this event loop
    instead (fast; easy to debug). Either way they are driven over loopback
    gRPC only.

    With ``cluster`` the providers run on a Dask cluster instead, one at a time
    on each worker, each worker a node of its own: ``"tcp://HOST:PORT"`` names
    a running scheduler, ``"local:N"`` starts a LocalCluster of N worker
    processes (see docs/cluster.md). It needs the ``dask`` extra and excludes
    ``providers``. The requestor stays here.

    When the task is done its outputs are put into ``out`` if given (hard links
    of the work dir's files where both are on one file system, else copies). A
    temporary work dir is removed after a successful run with ``out``; otherwise
    it is kept (its ``logs`` hold each child's output) and named in the result.

    Raises TaskFailed when the task cannot finish, ValueError on bad arguments.
    If cancelled, the task is aborted (AbortTask) and every child killed first.
    """
    _check_options(providers, subtask_timeout, max_attempts)
    if cluster is not None:
        if providers is not None:
            raise ValueError("providers and cluster exclude each other: each Dask worker is one")
        if isinstance(module, tuple):
            raise ValueError("a cluster runs the app by its name or file, not app objects")
        try:
            from . import _dask
        except ImportError as exc:
            raise TaskFailed(
                f"a cluster needs the distributed package (pip install 'golem_apps[dask]'): {exc}"
            ) from None
        _dask.parse_cluster(cluster)
    if heartbeat_timeout is not None and heartbeat_timeout <= 0:
        raise ValueError(f"heartbeat_timeout must be positive, got {heartbeat_timeout:g}")
    if module is None:
        if requestor_cmd is None or provider_cmd is None:
            raise ValueError("expected an app, or both requestor_cmd and provider_cmd")
        if in_process:
            raise ValueError("in_process needs an app (commands run as child processes)")
    if in_process and (requestor_cmd is not None or provider_cmd is not None):
        raise ValueError("in_process serves the app: it takes no requestor_cmd or provider_cmd")
    if max_subtasks < 0:
        raise ValueError(f"max_subtasks must not be negative, got {max_subtasks}")
    # The app is imported and checked before any process starts (a command's app cannot be).
    apps = None if module is None else await anyio.to_thread.run_sync(_load_apps, module)
    if not isinstance(module, str | None) and not in_process:
        raise ValueError("app objects run in this process only: pass in_process=True")
    in_here = apps is not None and (in_process or not isinstance(module, str))
    if not in_here:
        assert not isinstance(module, tuple)
        commands = _commands(module, requestor_cmd, provider_cmd, python, log_level)
    files = await anyio.to_thread.run_sync(check_inputs, list(inputs))
    temporary = work_dir is None
    root = await anyio.to_thread.run_sync(_work_root, work_dir, out)
    # The params as the requestor gets them (JSON), to compare with a recorded task's.
    task_params = json.loads(json.dumps(dict(params or {})))
    record, resumed = await anyio.to_thread.run_sync(_prepare, root, task_params, files)
    task_id = record.task_id
    task_dir = root / REQUESTOR_DIR / task_id
    reporter = reporter or Reporter()
    restarts: list[str] = []
    nodes: Nodes
    if in_here:
        assert apps is not None
        nodes = InProcessNodes(*apps)
    else:

        def on_restart(why: str) -> None:
            restarts.append(why)
            reporter.node_event("restarted", "requestor", why)

        nodes = SubprocessNodes(*commands, on_restart=on_restart)
    stats = Stats(resumed=resumed)
    machines_cm: AbstractAsyncContextManager[Machines]
    if cluster is not None:
        assert not isinstance(module, tuple)  # checked above
        machines_cm = _dask.dask_machines(
            cluster, app=module, log_level=log_level, run_id=task_id, reporter=reporter,
            # A user's command runs on the workers as given; the APP form is built there.
            provider_command=None if provider_cmd is None else commands[1].prefix,
        )  # fmt: skip
    else:
        machines_cm = LocalMachines(nodes, providers or 2, root).started(task_id)
    copying: asyncio.Future[tuple[Path, list[Path]] | TaskFailed] | None = None
    cleanup = ExitStack()
    capture = cleanup.enter_context(captured()) if isinstance(nodes, InProcessNodes) else None
    try:
        requestor_cm = nodes.requestor(root / REQUESTOR_DIR, root / LOGS_DIR / "requestor.log")
        # A cluster takes a while to start and stop: the requestor starts and stops meanwhile.
        both = entered_together if cluster is not None else entered_in_turn
        async with both(machines_cm, requestor_cm) as (machines, client):
            try:
                await _create(client, root, record, resumed, max_subtasks)
            except TaskFailed:
                await _end(root, record)  # refused: nothing to continue
                raise
            feed = StatusFeed(client, task_id, stats, reporter)
            reporter.start(stats, task_id, str(root))
            scheduler = Scheduler(
                client,
                machines,
                task_id=task_id,
                task_dir=task_dir,
                work_dir=root,
                subtask_timeout=subtask_timeout,
                max_attempts=max_attempts,
                reporter=reporter,
                stats=stats,
                heartbeat_timeout=heartbeat_timeout,
                journal=Journal(root, task_id),
                status=feed,
            )
            try:
                await scheduler.run(resume=resumed)
                outputs = await anyio.to_thread.run_sync(list_outputs, task_dir)
                if not outputs:
                    raise TaskFailed(
                        "the task cannot finish: nothing is pending or running and "
                        f"task_outputs is empty ({len(scheduler.failures)} failed subtasks; "
                        "the app's max_retries may be used up)"
                    )
                status = await feed.fetch()  # the final one, for the summary
            except BaseException:
                # As a node does when a task fails or the user stops it.
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(ABORT_TIMEOUT),
                    suppress(Exception),  # the task is given up either way
                ):
                    await client.abort_task(task_id)
                with anyio.CancelScope(shield=True):
                    await _end(root, record)
                raise
            await _end(root, record)
            if out is not None:
                # The outputs are final once the task is done: copy them while the
                # requestor shuts down (a copy that fails returns its error, raised below).
                copying = asyncio.ensure_future(
                    anyio.to_thread.run_sync(_copy_out, task_dir, out, outputs)
                )
    except TaskFailed as exc:
        message = str(exc)
        if capture is not None:
            found, where = capture.find(message), ""
        else:  # the children's output tells the rest of the story
            found = await anyio.to_thread.run_sync(find_in_logs, root / LOGS_DIR, message)
            where = f"logs in {root / LOGS_DIR}"
        if temporary:
            where = f"work dir {root} kept" + (f", {where}" if where else "")
        raise TaskFailed(
            f"{message} ({where})" if where else message,
            app_traceback=found.traceback if found else None,
            app_exception=found.exception if found else None,
        ) from None
    finally:
        reporter.stop()
        cleanup.close()
    if copying is not None:
        copied = await copying
        if isinstance(copied, TaskFailed):
            raise copied
        out_dir, outputs = copied
    else:
        out_dir = task_dir / TASK_OUTPUTS_DIR
    kept: Path | None = root
    if temporary and out is not None:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(root, ignore_errors=True))
        kept = None
    return RunResult(
        task_id=task_id,
        # Redundant parts have several successful subtasks: count the parts.
        parts=status.parts.get("done", stats.parts) if status is not None else stats.parts,
        subtasks=stats.subtasks,
        failures=tuple(scheduler.failures),
        wall_time=time.monotonic() - stats.started,
        outputs_dir=out_dir,
        output_files=tuple(outputs),
        work_dir=kept,
        status=status,
        requestor_restarts=len(restarts),
        resumed=resumed,
        temporary=temporary and kept is not None,
    )
