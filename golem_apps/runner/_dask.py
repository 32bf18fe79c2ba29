"""Providers on a Dask cluster (``--cluster``): each Dask worker is a machine of the runner.

Imported only when a cluster is asked for: it imports ``distributed`` (the
``dask`` extra). The requestor stays with the runner; every subtask runs on
the worker chosen for it, a call of the run's agent there (a Dask actor pinned
to that worker), as a fresh one-shot provider process
(``_dask_worker.run_subtask``). Each worker has an opaque node id of its
own for the whole run, so the requestor's votes and bans see machines.

Files travel over Dask's own connections: a resource once per worker (the
worker keeps it by content hash), a result inline when small and otherwise in
chunks of :data:`CHUNK_SIZE`, a few in flight, so that neither side holds a
large file in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import sysconfig
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import anyio
import dask.config
from distributed import Client, Future, LocalCluster
from distributed.diagnostics.plugin import UploadFile

from .._cli import is_file_spec
from .._client import ProgressReport
from .._exceptions import ComputeFailed, TaskFailed
from . import _dask_worker as remote
from ._machines import Machine, SubtaskJob, new_node_id
from ._progress import Reporter
from ._workdir import resource_file, result_folder

log = logging.getLogger("golem_apps.runner")

#: Results up to this size come back in the task's reply; larger ones in chunks.
INLINE_LIMIT = 1 << 20
#: The size of a chunk of a result or a resource (below Dask's 10 MB large-graph warning).
CHUNK_SIZE = 8 << 20
#: Chunks of one file in flight at once.
CHUNKS_IN_FLIGHT = 2
#: How often the runner asks the scheduler which workers exist (add/remove events come sooner).
MEMBERSHIP_POLL = 1.0
#: How long a run may go on with no worker at all before it fails.
NO_WORKER_TIMEOUT = 60.0
#: How long a call whose connection to its worker broke waits to hear that the worker left.
LOSS_GRACE = 2 * MEMBERSHIP_POLL
#: How long connecting to the scheduler may take.
CONNECT_TIMEOUT = 15.0
#: How long the clean-up calls on the workers (stop a provider, remove the run's folder) may take.
CLEANUP_TIMEOUT = 5.0


def parse_cluster(text: str) -> tuple[str, int]:
    """``--cluster``: ``("tcp://HOST:PORT", 0)`` for a scheduler, ``("", N)`` for ``local:N``.

    Raises ValueError with a one-line message for anything else.
    """
    if text.startswith("local:"):
        count = text[len("local:") :]
        if count.isdigit() and int(count) >= 1:
            return "", int(count)
        raise ValueError(f"--cluster local:N needs a number of workers N >= 1, got {text!r}")
    scheme, sep, rest = text.partition("://")
    host, colon, port = rest.rpartition(":")
    if not sep or not scheme or not host or not colon or not port.isdigit():
        raise ValueError(f"--cluster must be tcp://HOST:PORT or local:N, got {text!r}")
    return text, 0


def app_for_workers(app: str) -> tuple[Path | None, str]:
    """The file to upload to the workers (None: none), and the app spec they run.

    A file spec (``path/to/app.py[:ATTR]``) and a top-level module that is one
    ``.py`` file, not installed (``app[:ATTR]``, found from here), reach the
    workers by ``Client.upload_file``: the workers import it by its name. A
    package, or an installed module, must be in the workers' environment.
    """
    target, colon, attr = app.partition(":")
    suffix = f":{attr}" if colon else ""
    if is_file_spec(target):
        path = Path(target)
        path = path if path.suffix == ".py" else path.with_name(path.name + ".py")
        return path.resolve(), path.stem + suffix
    if "." in target:
        return None, app
    try:
        spec = find_spec(target)
    except (ImportError, ValueError):
        return None, app
    if spec is None or spec.origin is None or spec.submodule_search_locations is not None:
        return None, app
    origin = Path(spec.origin).resolve()
    if origin.suffix != ".py":
        return None, app
    installed = {sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib")}
    if any(origin.is_relative_to(Path(path).resolve()) for path in installed):
        return None, app
    return origin, app


@dataclass
class _Worker:
    """One Dask worker seen by this run: its machine, its agent, and whether it has left."""

    address: str
    machine: Machine
    gone: anyio.Event = field(default_factory=anyio.Event)
    agent: asyncio.Task[Any] | None = None
    """Placing this run's :class:`~._dask_worker.Agent` there: its proxy once done."""
    placed: Future[Any] | None = None
    """The agent's Dask future: held while the worker takes part (released, the agent goes)."""

    def release(self) -> None:
        """Let the worker drop this run's agent."""
        if self.placed is not None:
            self.placed.release()  # type: ignore[no-untyped-call]
            self.placed = None
        if self.agent is not None and not self.agent.done():
            self.agent.cancel()
        self.agent = None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _write_at(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b" if offset else "wb") as file:
        file.seek(offset)
        file.write(data)


def _read_at(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as file:
        file.seek(offset)
        return file.read(length)


def _write_log(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


class DaskMachines:
    """The workers of a Dask cluster as the runner's machines (see :class:`Machines`).

    Made by :func:`dask_machines`, which keeps the membership up to date.
    """

    def __init__(
        self,
        client: Client,
        *,
        app: str | None,
        provider_command: tuple[str, ...] | None,
        log_level: str,
        run_id: str,
        reporter: Reporter,
    ) -> None:
        self._client = client
        self._app = app
        self._provider_command = provider_command
        self._log_level = log_level
        self.run_id = run_id
        """This run's folder name on the workers."""
        self._reporter = reporter
        self._workers: dict[str, _Worker] = {}  # present ones, by address
        self._by_node: dict[str, _Worker] = {}
        self._count = 0
        self._hashes: dict[tuple[str, int, int, int], str] = {}
        self._progress: dict[str, Callable[[ProgressReport], None]] = {}
        self._empty_since: float | None = time.monotonic()
        self._arrivals: list[_Worker] = []  # told to the reporter when the loop looks
        self.progress_topic = f"golem_apps-progress-{run_id}"

    # -- membership ------------------------------------------------------------------

    def current(self) -> Sequence[Machine]:
        """The machines of the workers present now, in their order of arrival.

        Raises TaskFailed when the cluster has had no worker for NO_WORKER_TIMEOUT s.
        """
        for worker in self._arrivals:
            self._reporter.node_event(
                "joined", worker.machine.node_id, f"Dask worker {worker.address}"
            )
        self._arrivals.clear()
        if self._workers:
            self._empty_since = None
        elif self._empty_since is None:
            self._empty_since = time.monotonic()
        elif time.monotonic() - self._empty_since > NO_WORKER_TIMEOUT:
            raise TaskFailed(f"the Dask cluster has had no worker for {NO_WORKER_TIMEOUT:g} s")
        return sorted((w.machine for w in self._workers.values()), key=lambda m: m.index)

    def replace(self, machine: Machine) -> bool:
        """A worker is the same machine whatever happened: it keeps its node id."""
        return False

    def present(self) -> list[_Worker]:
        """The workers present now."""
        return list(self._workers.values())

    def addresses(self) -> list[str]:
        """The addresses of the workers present now."""
        return sorted(self._workers)

    def update(self, addresses: Sequence[str]) -> None:
        """The workers present now: new ones become machines, missing ones are gone."""
        present = set(addresses)
        for address in sorted(present - set(self._workers)):
            self._count += 1
            machine = Machine(self._count, new_node_id(self._count))
            worker = _Worker(address, machine)
            self._workers[address] = worker
            self._by_node[machine.node_id] = worker
            self._arrivals.append(worker)
            log.info("Dask worker %s joined as node %s", address, machine.node_id)
        for address in set(self._workers) - present:
            self.lost(address)

    def lost(self, address: str) -> None:
        """The worker left the cluster: whatever it was doing fails."""
        worker = self._workers.pop(address, None)
        if worker is None:
            return
        worker.gone.set()
        worker.release()
        self._reporter.node_event("left", worker.machine.node_id, f"Dask worker {address}")
        log.warning("Dask worker %s (node %s) left", address, worker.machine.node_id)

    async def refresh(self) -> None:
        """Ask the scheduler which workers exist."""
        scheduler = self._client.scheduler
        assert scheduler is not None  # set once the client has connected
        info = await scheduler.identity(n_workers=-1)
        addresses = [
            address
            for address, worker in info["workers"].items()
            if worker.get("status", "running") == "running"
        ]
        self.update(addresses)

    def on_cluster_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """A scheduler event of topic "all": a worker added or removed."""
        _, message = event
        action = message.get("action") if isinstance(message, dict) else None
        if action == "remove-worker":
            self.lost(str(message.get("worker")))

    def on_progress_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """A progress report forwarded by a worker."""
        _, message = event
        callback = self._progress.get(str(message.get("subtask_id")))
        if callback is not None:
            callback(
                ProgressReport(
                    str(message["subtask_id"]),
                    float(message["fraction"]),
                    str(message["message"]),
                    int(message["beats"]),
                )
            )

    # -- one subtask ---------------------------------------------------------------

    async def run(self, job: SubtaskJob) -> Path:
        """Compute ``job`` on its worker: resources there, the provider, the result back."""
        worker = self._by_node.get(job.node_id)
        if worker is None or worker.gone.is_set():
            raise ComputeFailed(f"node {job.node_id} is not in the Dask cluster any more")
        resources = tuple(
            [(name, await self._hash(job.requestor_task_dir, name)) for name in job.resources]
        )
        remote_job = remote.WorkerJob(
            run_id=self.run_id,
            task_id=job.task_id,
            subtask_id=job.subtask_id,
            node_id=job.node_id,
            params=job.params,
            resources=resources,
            app=self._app,
            provider_command=self._provider_command,
            log_level=self._log_level,
            inline_limit=INLINE_LIMIT,
            heartbeat_timeout=job.heartbeat_timeout,
            progress_topic=self.progress_topic if job.on_progress is not None else None,
        )
        if job.on_progress is not None:
            self._progress[job.subtask_id] = job.on_progress
        try:
            reply = await self._run_remote(worker, remote_job)
            if "missing" in reply:
                by_hash = {sha: name for name, sha in resources}
                for sha in reply["missing"]:
                    await self._send(worker, resource_file(job.requestor_task_dir, by_hash[sha]))
                reply = await self._run_remote(worker, remote_job)
                if "missing" in reply:
                    raise ComputeFailed("the worker lost the resources it was sent")
        finally:
            self._progress.pop(job.subtask_id, None)
        if reply.get("log"):
            await anyio.to_thread.run_sync(_write_log, job.log_path, reply["log"])
        if "failed" in reply:
            raise ComputeFailed(str(reply["failed"]))
        return await self._fetch(worker, reply, job)

    async def _run_remote(self, worker: _Worker, job: remote.WorkerJob) -> dict[str, Any]:
        try:
            reply: dict[str, Any] = await self._pinned(worker, "run_subtask", job)
            return reply
        except BaseException:
            # Cancelled (a timeout, the task's end): the provider must not keep
            # computing there. (A worker that left took its provider with it.)
            if worker.gone.is_set():
                raise
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT):
                try:
                    await self._client.run(
                        remote.stop_subtask, job.subtask_id, workers=[worker.address],
                        on_error="ignore",
                    )  # fmt: skip
                except Exception as exc:  # the worker may be gone: nothing left to stop
                    log.debug("stopping subtask %s: %s", job.subtask_id, exc)
            raise

    async def _pinned(self, worker: _Worker, method: str, *args: Any) -> Any:
        """Call ``method(*args)`` of the worker's agent; ComputeFailed if the worker leaves."""
        if worker.gone.is_set():
            raise ComputeFailed(f"Dask worker {worker.address} left the cluster")
        result: Any = None
        failure: str | None = None
        async with anyio.create_task_group() as tg:

            async def watch_worker() -> None:
                nonlocal failure
                await worker.gone.wait()
                failure = f"Dask worker {worker.address} left the cluster during the subtask"
                tg.cancel_scope.cancel()

            tg.start_soon(watch_worker)
            try:
                agent = await self._agent(worker)
                result = await getattr(agent, method)(*args)
            except OSError as exc:
                # The connection to the worker broke, most likely with the worker:
                # the scheduler says so soon (then watch_worker says it).
                failure = f"on Dask worker {worker.address}: {type(exc).__name__}: {exc}"
                await anyio.sleep(LOSS_GRACE)
            except Exception as exc:
                failure = f"on Dask worker {worker.address}: {type(exc).__name__}: {exc}"
            tg.cancel_scope.cancel()
        if failure is not None:
            raise ComputeFailed(failure)
        return result

    async def _agent(self, worker: _Worker) -> Any:
        """The worker's agent (a Dask actor), placed there at its first call."""
        if worker.agent is None:
            placed: Future[Any] = self._client.submit(
                remote.Agent,
                actor=True,
                key=f"golem_apps-agent-{uuid.uuid4().hex}",
                workers=[worker.address],
                allow_other_workers=False,
            )
            worker.placed = placed
            worker.agent = asyncio.ensure_future(placed)
        # Shared by the worker's calls: one caller cancelled must not cancel it for all.
        return await asyncio.shield(worker.agent)

    async def _hash(self, task_dir: Path, name: str) -> str:
        path = await anyio.to_thread.run_sync(resource_file, task_dir, name)
        stat = await anyio.to_thread.run_sync(path.stat)
        # A resource shared by many subtasks is hashed once (unless it changes).
        key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        digest = self._hashes.get(key)
        if digest is None:
            digest = await anyio.to_thread.run_sync(_sha256, path)
            self._hashes[key] = digest
        return digest

    async def _send(self, worker: _Worker, path: Path) -> None:
        """Send one resource to the worker's cache, a chunk at a time."""
        sha = await self._hash(path.parent.parent, path.name)
        size = (await anyio.to_thread.run_sync(path.stat)).st_size
        chunks = max(1, math.ceil(size / CHUNK_SIZE))
        for index in range(chunks):
            offset = index * CHUNK_SIZE
            data = await anyio.to_thread.run_sync(_read_at, path, offset, CHUNK_SIZE)
            await self._pinned(
                worker, "write_chunk", self.run_id, sha, offset, data, index == chunks - 1
            )

    async def _fetch(self, worker: _Worker, reply: dict[str, Any], job: SubtaskJob) -> Path:
        """Put the worker's result into ``subtask_outputs/<subtask_id>/``."""
        folder = await anyio.to_thread.run_sync(
            result_folder, job.requestor_task_dir, job.subtask_id
        )
        target = folder / Path(str(reply["name"])).name
        data = reply.get("data")
        if data is not None:
            await anyio.to_thread.run_sync(_write_at, target, 0, data)
            return target
        size = int(reply["size"])
        offsets = list(range(0, size, CHUNK_SIZE))
        await anyio.to_thread.run_sync(_write_at, target, 0, b"")
        send, receive = anyio.create_memory_object_stream[tuple[int, bytes]](CHUNKS_IN_FLIGHT)

        async def read_all() -> None:
            async with send:
                for offset in offsets:
                    chunk = await self._pinned(
                        worker, "read_chunk", self.run_id, reply["path"], offset, CHUNK_SIZE
                    )
                    await send.send((offset, chunk))

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_all)
                async with receive:
                    async for offset, chunk in receive:
                        await anyio.to_thread.run_sync(_write_at, target, offset, chunk)
        except BaseExceptionGroup as group:
            # One side failed and the other was cancelled: raise the failure as it was.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        written = (await anyio.to_thread.run_sync(target.stat)).st_size
        if written != size:
            raise ComputeFailed(f"the result arrived with {written} of {size} bytes")
        return target


@asynccontextmanager
async def dask_machines(
    cluster: str,
    *,
    app: str | None,
    provider_command: tuple[str, ...] | None,
    log_level: str,
    run_id: str,
    reporter: Reporter,
) -> AsyncIterator[DaskMachines]:
    """Connect to the cluster (or start ``local:N``) and yield its workers as machines.

    The workers serve ``app`` (a spec, as for ``golem_apps.serve``) or run
    ``provider_command`` (a ``--provider-cmd`` prefix, given: it must work there).

    On the way out the run's folder is removed from every worker that took part.
    Raises TaskFailed when the scheduler cannot be reached.
    """
    address, local_workers = parse_cluster(cluster)
    # distributed sets its loggers to INFO when imported: quieter unless asked.
    logging.getLogger("distributed").setLevel(max(logging.INFO, logging.getLevelName(log_level)))
    async with AsyncExitStack() as stack:
        if local_workers:
            # Spawned, each worker process is a new interpreter that imports
            # distributed (~0.3 s of CPU) and ends with a whole interpreter
            # shutdown; forked from multiprocessing's fork server (one per runner
            # process, distributed imported) it starts in a fraction of that and
            # exits at once (docs/performance.md). Read as the workers start.
            with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
                local = await stack.enter_async_context(
                    LocalCluster(  # type: ignore[no-untyped-call]  # distributed is untyped
                        n_workers=local_workers,
                        threads_per_worker=1,
                        processes=True,
                        asynchronous=True,
                        dashboard_address=":0",
                        silence_logs=logging.WARNING,
                        preload=[remote.__name__],  # remote.dask_setup: a session of their own
                    )
                )
            address = local.scheduler_address
        try:
            client = await stack.enter_async_context(
                Client(  # type: ignore[no-untyped-call]
                    address,
                    asynchronous=True,
                    timeout=CONNECT_TIMEOUT,
                    # local:N's workers are on this machine: the agents' calls go to them
                    # directly. Else as Dask's config says (through the scheduler by default).
                    direct_to_workers=True if local_workers else None,
                )
            )
        except (OSError, TimeoutError) as exc:
            raise TaskFailed(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        log.info("Dask scheduler %s; its dashboard (with bokeh there): %s", address,
                 client.dashboard_link)  # fmt: skip
        app_file, worker_app = None, None
        if provider_command is None:
            assert app is not None
            app_file, worker_app = await anyio.to_thread.run_sync(app_for_workers, app)
        machines = DaskMachines(
            client, app=worker_app, provider_command=provider_command, log_level=log_level,
            run_id=run_id, reporter=reporter,
        )  # fmt: skip
        if app_file is not None:
            plugin = f"golem_apps-upload-{run_id}"
            upload = await anyio.to_thread.run_sync(UploadFile, str(app_file), False)
            # Workers that join later get it too (a worker plugin).
            await client.register_plugin(upload, name=plugin)
            stack.push_async_callback(client.unregister_worker_plugin, plugin)
        for topic, handler in (
            ("all", machines.on_cluster_event),
            (machines.progress_topic, machines.on_progress_event),
        ):
            client.subscribe_topic(topic, handler)
            # Before the client closes: else the scheduler sends it the event of its own leaving.
            stack.callback(client.unsubscribe_topic, topic)
        await machines.refresh()

        async def watch() -> None:
            while True:
                await anyio.sleep(MEMBERSHIP_POLL)
                try:
                    await machines.refresh()
                except Exception as exc:
                    log.warning("asking the Dask scheduler for its workers: %s", exc)

        # A plain task, not a task group around the yield: the run's own errors
        # must come out as they are, not wrapped in an exception group.
        watcher = asyncio.ensure_future(watch())
        try:
            yield machines
        finally:
            watcher.cancel()
            for worker in machines.present():
                worker.release()
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT):
                await asyncio.wait({watcher})
                try:
                    await client.run(
                        remote.remove_run, machines.run_id, workers=machines.addresses(),
                        on_error="ignore",
                    )  # fmt: skip
                except Exception as exc:
                    log.warning("cleaning up the Dask workers: %s", exc)
