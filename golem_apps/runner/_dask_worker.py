"""What runs on a Dask worker: one subtask's one-shot provider, as a node runs it, and file chunks.

The runner sends these functions by reference, so each worker imports this
module: the workers need golem_apps and the app in their environment (see
docs/cluster.md). :func:`run_subtask`, :func:`read_chunk` and
:func:`write_chunk` are the methods of an :class:`Agent`, a Dask actor the
runner places on each worker (they run in the worker's actor thread, one at a
time); :func:`stop_subtask` and :func:`remove_run` run through ``Client.run``
on the worker's event loop, so that they get through while a subtask occupies
that thread.

On the worker, everything of one run lives under
``<worker local_directory>/golem_apps/<run id>/``, laid out as the local
runner's work dir: ``providers/<node id>/<task id>/subtask_inputs`` (the
provider's task work dir, as a node lays it out), ``logs/<subtask id>.log``,
and ``cache/<sha256>``, the resources received, each once per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from .._cli import role_spec
from .._client import ProgressReport
from .._exceptions import ComputeFailed
from .._validate import safe_name
from ..constants import SUBTASK_INPUTS_DIR
from ._nodes import ComputeJob, SubprocessNodes
from ._process import ServerCommand
from ._workdir import LOGS_DIR, prepare_provider, result_file, tail

#: The folder of golem_apps' runs in a worker's local directory.
WORKER_DIR = "golem_apps"
CACHE_DIR = "cache"
#: How much of a provider's log comes back with its result.
LOG_LIMIT = 256 * 1024

_lock = threading.Lock()
_running: dict[str, tuple[asyncio.AbstractEventLoop, anyio.CancelScope]] = {}
_stopped: set[str] = set()
_providers: dict[tuple[ServerCommand, tuple[tuple[str, str], ...]], SubprocessNodes] = {}


@dataclass(frozen=True)
class WorkerJob:
    """One subtask for one worker: everything its provider needs, and nothing of the runner's."""

    run_id: str
    task_id: str
    subtask_id: str
    node_id: str
    params: dict[str, Any]
    resources: tuple[tuple[str, str], ...]
    """(file name, sha256 of its content) of each resource."""
    app: str | None
    """The app spec to serve (``python -m golem_apps.serve``), or None with ``provider_command``."""
    provider_command: tuple[str, ...] | None
    """A user's ``--provider-cmd`` prefix, run on the worker as it is."""
    log_level: str
    inline_limit: int
    """Results up to this size come back in the reply; larger ones in chunks."""
    heartbeat_timeout: float | None = None
    progress_topic: str | None = None
    """The Dask event topic to forward progress reports to (None: none wanted)."""


def run_root(run_id: str) -> Path:
    """This worker's folder for one run."""
    from distributed import get_worker

    safe_name(run_id, "run id")
    return Path(get_worker().local_directory) / WORKER_DIR / run_id


def _inside(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ValueError(f"{relative!r} is not inside the run's folder")
    return path


def _read_log(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - LOG_LIMIT))
            return file.read()
    except OSError:
        return b""


def _provider_env() -> dict[str, str]:
    # A file uploaded with Client.upload_file lands in the worker's local
    # directory, which is on the worker's sys.path: the provider needs it too.
    from distributed import get_worker

    env = dict(os.environ)
    upload_dir = get_worker().local_directory
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join([upload_dir, existing] if existing else [upload_dir])
    return env


def _forwarder(topic: str) -> Any:
    from distributed import get_worker

    worker = get_worker()

    def forward(report: ProgressReport) -> None:
        # Worker.log_event is thread-safe: it hands the message to the worker's loop.
        worker.log_event(
            topic,
            {
                "subtask_id": report.subtask_id,
                "fraction": report.fraction,
                "message": report.message,
                "beats": report.beats,
            },
        )

    return forward


_loop: asyncio.AbstractEventLoop | None = None


async def _forever(ready: threading.Event) -> None:
    # The loop's root task, as anyio.run's would be: anyio's worker threads stay with it.
    ready.set()
    await asyncio.Event().wait()


def _providers_loop() -> asyncio.AbstractEventLoop:
    """The worker process's event loop for its providers, in a thread of its own.

    One for every subtask: a new loop per subtask (anyio.run) cost each one
    ~2.5 ms of the worker's CPU (the loop, its worker threads, their shutdown).
    """
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            threading.Thread(
                target=loop.run_until_complete, args=(_forever(ready),),
                name="golem_apps providers", daemon=True,
            ).start()  # fmt: skip
            ready.wait()
            _loop = loop
    return _loop


def _nodes(job: WorkerJob, env: dict[str, str]) -> SubprocessNodes:
    # The serve form with this worker's interpreter: the runner's may live elsewhere.
    if job.provider_command is not None:
        command = ServerCommand(job.provider_command)
    else:
        assert job.app is not None
        command = ServerCommand.serve(sys.executable, role_spec(job.app, "provider"), job.log_level)
    key = (command, tuple(sorted(env.items())))
    with _lock:
        # One per command: it learns once whether the provider serves ProviderProgress.
        nodes = _providers.get(key)
        if nodes is None:
            # Only providers run here: the requestor's command is never used.
            nodes = _providers[key] = SubprocessNodes(command, command, env=env)
    return nodes


async def _compute(job: WorkerJob, task_dir: Path, log_path: Path, env: dict[str, str]) -> str:
    nodes = _nodes(job, env)
    compute_job = ComputeJob(
        job.task_id,
        job.subtask_id,
        job.params,
        task_dir,
        log_path,
        on_progress=_forwarder(job.progress_topic) if job.progress_topic else None,
        heartbeat_timeout=job.heartbeat_timeout,
    )
    with anyio.CancelScope() as scope:
        with _lock:
            if job.subtask_id in _stopped:
                _stopped.discard(job.subtask_id)
                scope.cancel()
            _running[job.subtask_id] = (asyncio.get_running_loop(), scope)
        try:
            return await nodes.compute(compute_job)
        finally:
            with _lock:
                _running.pop(job.subtask_id, None)
    raise ComputeFailed("stopped by the runner")


def run_subtask(job: WorkerJob) -> dict[str, Any]:
    """Compute one subtask in a fresh one-shot provider process on this worker.

    Replies ``{"missing": [sha256, ...]}`` when resources are not in the cache
    yet (the runner sends them and asks again), ``{"failed": why, "log": ...}``
    when the computation failed, else the result: its ``name``, ``size``,
    ``path`` (relative to the run's folder, for :func:`read_chunk`), ``data``
    when it is small, and the provider's ``log``.
    """
    root = run_root(job.run_id)
    cache = root / CACHE_DIR
    missing = sorted({sha for _, sha in job.resources if not (cache / sha).is_file()})
    if missing:
        return {"missing": missing}
    task_dir = prepare_provider(root, job.node_id, job.task_id)
    for name, sha in job.resources:
        safe_name(name, "resource name")
        shutil.copyfile(cache / sha, task_dir / SUBTASK_INPUTS_DIR / name)
    (root / LOGS_DIR).mkdir(exist_ok=True)
    log_path = root / LOGS_DIR / f"{job.subtask_id}.log"
    try:
        running = asyncio.run_coroutine_threadsafe(
            _compute(job, task_dir, log_path, _provider_env()), _providers_loop()
        )
        output = running.result()
        path = result_file(task_dir, output)
    except ComputeFailed as exc:
        return {"failed": str(exc) or tail(log_path), "log": _read_log(log_path)}
    size = path.stat().st_size
    reply: dict[str, Any] = {
        "name": path.name,
        "size": size,
        "path": str(path.relative_to(root.resolve())),
        "log": _read_log(log_path),
    }
    if size <= job.inline_limit:
        reply["data"] = path.read_bytes()
    return reply


def stop_subtask(subtask_id: str) -> bool:
    """Stop the subtask's provider (killed), or have it stop as it starts. True if it ran."""
    with _lock:
        entry = _running.get(subtask_id)
        if entry is None:
            _stopped.add(subtask_id)
            return False
    loop, scope = entry
    loop.call_soon_threadsafe(scope.cancel)
    return True


def read_chunk(run_id: str, relative: str, offset: int, length: int) -> bytes:
    """``length`` bytes (fewer at the end) from ``offset`` of a file in the run's folder."""
    with _inside(run_root(run_id), relative).open("rb") as file:
        file.seek(offset)
        return file.read(length)


def write_chunk(run_id: str, sha256: str, offset: int, data: bytes, last: bool) -> None:
    """Write one chunk of a resource into the cache; the last one checks the hash and commits.

    A resource is in the cache (``cache/<sha256>``) only once all of it has arrived intact.
    """
    safe_name(sha256, "resource hash")
    cache = run_root(run_id) / CACHE_DIR
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f"{sha256}.part"
    with partial.open("r+b" if offset else "wb") as file:
        file.seek(offset)
        file.write(data)
    if last:
        digest = hashlib.sha256()
        with partial.open("rb") as file:
            while block := file.read(1 << 20):
                digest.update(block)
        if digest.hexdigest() != sha256:
            partial.unlink()
            raise ValueError(f"resource {sha256[:12]} arrived corrupted")
        partial.replace(cache / sha256)


class Agent:
    """golem_apps on one worker: a Dask actor, one per worker and run, made by the runner.

    A call of an actor's method is one RPC from the runner to the worker (or
    through the scheduler, as Dask's ``direct-to-workers`` setting says),
    answered with the result. A Dask task takes the scheduler's whole round:
    submit, the worker's task states, its result fetched by one more request,
    the release. For a subtask of the trivial app that round cost ~4.7 ms of
    CPU and ~11 ms of latency where the actor's call costs ~0.9 ms and ~1.3 ms
    (docs/performance.md).
    """

    # The module's functions, as the actor's methods (Dask calls them on the instance).
    run_subtask = staticmethod(run_subtask)
    read_chunk = staticmethod(read_chunk)
    write_chunk = staticmethod(write_chunk)


def dask_setup(worker: Any) -> None:
    """The preload of ``local:N`` workers: a session of their own, as the runner's children have.

    A Ctrl-C on the terminal then reaches the runner only (which closes the
    cluster), and with Linux's autogroup scheduling each worker gets a CPU
    share of its own instead of sharing the runner's (see docs/cluster.md).
    A worker still ends with the runner: its nanny's pipe closes.
    """
    with contextlib.suppress(OSError):  # a process group's leader already
        os.setsid()


def remove_run(run_id: str, dask_worker: Any) -> None:
    """Remove this worker's folder of the run (``Client.run`` passes ``dask_worker``)."""
    safe_name(run_id, "run id")
    shutil.rmtree(Path(dask_worker.local_directory) / WORKER_DIR / run_id, ignore_errors=True)
