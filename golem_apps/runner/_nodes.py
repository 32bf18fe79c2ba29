"""Where the requestor and the providers run: child processes (as on a node) or in-process.

Either way the runner talks to them only over loopback gRPC, through
:class:`golem_apps.RequestorClient` and :class:`golem_apps.ProviderClient`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from grpclib.exceptions import GRPCError, StreamTerminatedError

from .._client import ProgressReport, ProviderClient, RequestorClient
from .._exceptions import ComputeFailed, ConfigError, TaskFailed
from ..server._progress import SERVICE as PROGRESS_SERVICE
from ._process import (
    PROVIDER_EXIT_TIMEOUT,
    ServerCommand,
    ServerProcess,
    StartupTimes,
    child_env,
    describe_exit,
)
from ._requestor import RequestorSupervisor
from ._workdir import tail

if TYPE_CHECKING:
    from .._provider import Provider
    from .._requestor import Requestor

log = logging.getLogger("golem_apps.runner")

#: How long a client waits for a freshly started server's Health to say SERVING.
CONNECT_TIMEOUT = 15.0


@dataclass(frozen=True)
class ComputeJob:
    """One subtask for one provider: what Compute needs and where the provider works."""

    task_id: str
    subtask_id: str
    params: dict[str, Any]
    task_dir: Path
    log_path: Path
    on_progress: Callable[[ProgressReport], None] | None = None
    """Called with each progress report the provider streams."""
    heartbeat_timeout: float | None = None
    """Once the provider has reported progress, the longest silence it may keep."""


async def _watch(client: ProviderClient, job: ComputeJob, stalled: list[str]) -> None:
    # Follow the provider's progress; after a first report, a silence longer than
    # the heartbeat timeout is a stall: say why in ``stalled`` and return.
    last: ProgressReport | None = None
    updates = client.watch_progress()
    try:
        while True:
            timeout = job.heartbeat_timeout if last is not None and last.beats else None
            with anyio.move_on_after(timeout) as silence:
                try:
                    report = await updates.__anext__()
                except StopAsyncIteration:
                    return
            if silence.cancelled_caught:
                assert last is not None and timeout is not None
                shown = f"{last.fraction:.0%}" + (f" {last.message}" if last.message else "")
                stalled.append(f"no heartbeat for {timeout:g} s (last progress: {shown})")
                return
            fresh = report.beats and (last is None or report.beats != last.beats)
            if fresh and job.on_progress is not None:
                job.on_progress(report)
            last = report
    except (GRPCError, OSError, StreamTerminatedError):
        return  # the provider is gone: Compute tells why
    finally:
        await updates.aclose()


async def compute_watched(client: ProviderClient, job: ComputeJob, *, watch: bool = True) -> str:
    """Compute through ``client`` while watching its progress and heartbeat.

    ``watch`` says whether the provider serves golem_apps.ProviderProgress:
    without it the Compute call is all there is. Raises ComputeFailed when
    the heartbeat stops (the caller kills the provider).
    """
    if not watch or (job.on_progress is None and job.heartbeat_timeout is None):
        return await client.compute(job.task_id, job.subtask_id, job.params)
    stalled: list[str] = []
    # Plain asyncio tasks, not an anyio task group: grpclib's calls do not keep
    # asyncio's cancellation count exact when a connection breaks, which makes a
    # cancel scope around them leak its cancellation into the caller.
    computing = asyncio.ensure_future(client.compute(job.task_id, job.subtask_id, job.params))
    watching = asyncio.ensure_future(_watch_quietly(client, job, stalled))
    try:
        await asyncio.wait({computing, watching}, return_when=asyncio.FIRST_COMPLETED)
        if stalled:
            raise ComputeFailed(stalled[0])
        return await computing
    finally:
        for task in (computing, watching):
            task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.wait({computing, watching})
        if not computing.cancelled():
            computing.exception()  # retrieved: no "exception never retrieved" warning


async def _watch_quietly(client: ProviderClient, job: ComputeJob, stalled: list[str]) -> None:
    try:
        await _watch(client, job, stalled)
    except Exception as exc:  # watching is a bonus: never fail a computation for it
        log.warning("watching subtask %s failed: %s", job.subtask_id, exc)


_Started = tuple[ServerProcess, ProviderClient]


@dataclass(frozen=True)
class _Ahead:
    """A provider started ahead: its start (a task), and its log until a compute takes it."""

    starting: asyncio.Task[_Started]
    log_path: Path


async def _stop_started(ahead: _Ahead) -> None:
    """Stop a provider started ahead and not used (starting, serving or dead); drop its log."""
    starting = ahead.starting
    starting.cancel()
    await asyncio.wait({starting})
    if not starting.cancelled() and starting.exception() is None:  # else _start stopped it
        child, client = starting.result()
        client.close()
        await child.stop()
    await anyio.to_thread.run_sync(lambda: ahead.log_path.unlink(missing_ok=True))


class Nodes(Protocol):
    """Starts the requestor app and runs one-shot provider apps."""

    def requestor(
        self, work_dir: Path, log_path: Path
    ) -> AbstractAsyncContextManager[RequestorClient]:
        """Serve the requestor on ``work_dir`` while the block runs; yield a connected client."""

    async def compute(self, job: ComputeJob) -> str:
        """Run one provider for ``job``; its result path. ComputeFailed when it failed."""

    def warm(self, starts: Sequence[tuple[Path, Path]]) -> AbstractAsyncContextManager[None]:
        """While the block runs, providers may be started ahead in ``starts`` (task dir, log)
        for :meth:`compute` to take; what is left when it ends is stopped."""


async def _connect_provider(host: str, port: int) -> ProviderClient:
    try:
        return await ProviderClient.connect(host, port, timeout=CONNECT_TIMEOUT)
    except (TimeoutError, OSError) as exc:
        raise ComputeFailed(f"provider not reachable: {exc}") from None


class SubprocessNodes:
    """Each app is a child process started from a command, as a node runs an image.

    ``requestor`` and ``provider`` are command prefixes (see
    :class:`ServerCommand`); the requestor is restarted on its work dir when
    it dies (see :class:`RestartingRequestor`), ``on_restart`` is told why.
    """

    def __init__(
        self,
        requestor: ServerCommand,
        provider: ServerCommand,
        *,
        env: Mapping[str, str] | None = None,
        on_restart: Callable[[str], None] | None = None,
    ) -> None:
        self.requestor_command = requestor
        self.provider_command = provider
        self.env = child_env(env)
        self.on_restart = on_restart
        self._watch: bool | None = None  # does the provider serve ProviderProgress?
        self._startup = StartupTimes()  # the providers' start-up times
        # Providers started ahead (see warm), by task dir: a process serving, or starting.
        self._warm: dict[Path, _Ahead] = {}

    @asynccontextmanager
    async def requestor(self, work_dir: Path, log_path: Path) -> AsyncIterator[RequestorClient]:
        """Start the requestor process; on a normal exit Shutdown it, then kill what is left."""
        await anyio.to_thread.run_sync(lambda: work_dir.mkdir(parents=True, exist_ok=True))
        supervisor = RequestorSupervisor(
            self.requestor_command, work_dir, log_path, self.env, self.on_restart
        )
        try:
            client = await supervisor.start()
        except BaseException as exc:  # cancelled too (a cluster that failed to start meanwhile)
            with anyio.CancelScope(shield=True):
                await supervisor.stop()
            if isinstance(exc, ComputeFailed):
                raise TaskFailed(f"the requestor did not start: {exc}") from None
            raise
        try:
            yield client
            await supervisor.shutdown()
        finally:
            await supervisor.stop()

    @asynccontextmanager
    async def warm(self, starts: Sequence[tuple[Path, Path]]) -> AsyncIterator[None]:
        """Start a provider in each task dir of ``starts`` now, for :meth:`compute` to take.

        Only for golem_apps' own command (``golem_apps.serve``): its provider
        reads subtask_inputs in Compute, never while it starts, so it may start
        before NextSubtask has named the resources, while the requestor starts
        (the run's first providers no longer wait for it). Another app is
        started as a node starts it: after its subtask's resources are in place.
        The providers not taken are stopped when the block ends.
        """
        if self.provider_command.golem_apps:
            for task_dir, log_path in starts:
                starting = asyncio.ensure_future(self._start(task_dir, log_path))
                self._warm[task_dir] = _Ahead(starting, log_path)
        try:
            yield
        finally:
            left, self._warm = list(self._warm.values()), {}
            with anyio.CancelScope(shield=True):
                for ahead in left:
                    await _stop_started(ahead)

    async def _start(self, task_dir: Path, log_path: Path) -> _Started:
        # A provider serving in ``task_dir``, its client connected (ComputeFailed if it cannot).
        child = await ServerProcess.start(
            self.provider_command, "provider", task_dir, log_path, self.env
        )
        try:
            return child, await child.connect(ProviderClient, startup=self._startup)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await child.stop()
            raise

    async def _take(self, ahead: _Ahead, log_path: Path) -> _Started | None:
        # A provider started ahead, its log renamed as the subtask's; None when it did
        # not start or died waiting (the caller starts one as usual, whose failure tells).
        try:
            child, client = await asyncio.shield(ahead.starting)
        except asyncio.CancelledError:  # this caller was cancelled: the provider goes too
            with anyio.CancelScope(shield=True):
                await _stop_started(ahead)
            raise
        except ComputeFailed:
            await _stop_started(ahead)  # only its log is left
            return None
        if child.process.returncode is not None:
            await _stop_started(ahead)
            return None
        try:
            await anyio.to_thread.run_sync(child.log_path.replace, log_path)
        except BaseException:
            client.close()
            with anyio.CancelScope(shield=True):
                await child.stop()
            raise
        child.log_path = log_path
        return child, client

    async def compute(self, job: ComputeJob) -> str:
        """Start a one-shot provider on the job's task dir (or take the one started ahead
        there), Compute, wait for it to exit."""
        ahead = self._warm.pop(job.task_dir, None)
        taken = None if ahead is None else await self._take(ahead, job.log_path)
        child, client = taken or await self._start(job.task_dir, job.log_path)
        try:
            try:
                if self._watch is None:
                    # Asked once, of the first provider, before any Compute: a
                    # provider without the service answers NOT_FOUND, and nothing else.
                    self._watch = await client.offers(PROGRESS_SERVICE)
                output = await compute_watched(client, job, watch=self._watch)
            except GRPCError as exc:
                await child.wait_exit(PROVIDER_EXIT_TIMEOUT)
                raise ComputeFailed(f"compute failed: {exc.message}") from None
            except ComputeFailed:
                raise  # its heartbeat stopped: killed below
            except Exception:  # the connection broke: the process died under us
                code = await child.wait_exit(PROVIDER_EXIT_TIMEOUT)
                why = await anyio.to_thread.run_sync(tail, job.log_path)
                raise ComputeFailed(
                    f"provider {describe_exit(code)} during Compute" + (f": {why}" if why else "")
                ) from None
            finally:
                client.close()
            code = await child.wait_exit(PROVIDER_EXIT_TIMEOUT)
            if code != 0:
                # The node reads a non-zero exit as a failed computation, even after a reply.
                raise ComputeFailed(f"provider {describe_exit(code)} after Compute")
            return output
        finally:
            await child.stop()


class InProcessNodes:
    """Requestor and providers are servers in this event loop: fast, and easy to debug.

    Still driven over loopback gRPC through the clients. A provider's sync
    compute runs in a worker thread; a timed-out one is left to notice
    ``ctx.cancelled``.
    """

    def __init__(self, requestor: Requestor, provider: Provider) -> None:
        self.requestor_app = requestor
        self.provider_app = provider

    @asynccontextmanager
    async def requestor(self, work_dir: Path, log_path: Path) -> AsyncIterator[RequestorClient]:
        """Serve the requestor app in this loop while the block runs."""
        from ..server._requestor import serve_requestor

        async with AsyncExitStack() as stack:
            try:
                server = await stack.enter_async_context(
                    serve_requestor(self.requestor_app, work_dir=work_dir)
                )
            except ConfigError as exc:
                raise TaskFailed(f"the requestor did not start: {exc}") from None
            client = await RequestorClient.connect("127.0.0.1", server.port)
            stack.callback(client.close)
            yield client

    @asynccontextmanager
    async def warm(self, starts: Sequence[tuple[Path, Path]]) -> AsyncIterator[None]:
        """Nothing to start ahead: a provider here is a server in this loop, cheap to start."""
        yield

    async def compute(self, job: ComputeJob) -> str:
        """Serve one provider request in this loop and Compute through it."""
        from ..server._provider import serve_provider

        try:
            async with serve_provider(self.provider_app, work_dir=job.task_dir) as server:
                client = await _connect_provider("127.0.0.1", server.port)
                try:
                    output = await compute_watched(client, job)
                except GRPCError as exc:
                    raise ComputeFailed(f"compute failed: {exc.message}") from None
                finally:
                    client.close()
                code = await server.wait()
        except ConfigError as exc:
            raise ComputeFailed(f"the provider did not start: {exc}") from None
        if code != 0:
            raise ComputeFailed(f"provider exited with code {code} after Compute")
        return output
