"""The one-shot ProviderApp server: one Compute or RunBenchmark (or a Shutdown), then stop.

This module is the provider's start-up path, paid once per subtask: it never
imports the engine, the runner, SQLite or rich, nor betterproto or anyio
(tests/test_provider_fast_path.py checks it; docs/performance.md says why).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

from grpclib.const import Handler, Status
from grpclib.exceptions import GRPCError

from .. import _wire as api
from .._exceptions import ConfigError
from .._handlers import is_async
from .._provider import Provider
from .._task import ComputeContext
from .._validate import parse_params, safe_id
from ._apploop import AppLoop, call
from ._health import Health
from ._listen import check_work_dir, confirm_delivery, start
from ._progress import SERVICE as PROGRESS_SERVICE
from ._progress import ProgressService
from ._unary import unary

log = logging.getLogger("golem_apps.provider")

#: Exit codes of a provider process.
EXIT_OK = 0
EXIT_FAILED = 1


def _result_path(task_dir: Path, output: object) -> str:
    """The result file as a path relative to the task dir; it must be a file inside it."""
    if not isinstance(output, str | Path):
        raise TypeError(
            f"the compute handler must return the result file's path, not {type(output).__name__}"
        )
    path = Path(output)
    if not path.is_absolute():
        path = task_dir / path
    root = task_dir.resolve()
    resolved = path.resolve()  # symlinks too: a link pointing out of the task dir is refused
    if not resolved.is_relative_to(root):
        raise ValueError(f"the result file {output} is outside the task dir {task_dir}")
    if not resolved.is_file():
        raise FileNotFoundError(f"the result file {output} does not exist or is not a file")
    return str(resolved.relative_to(root))


def _with_files(handler: Callable[..., object], task_dir: Path) -> Callable[..., object]:
    """The compute handler with its file work around it (its subtask dir, the result's check).

    All of it runs where the handler runs, off the server's event loop.
    """
    if is_async(handler):
        run = cast(Callable[..., Awaitable[object]], handler)

        async def compute_async(context: ComputeContext, *typed: object) -> str:
            context.subtask_dir.mkdir(parents=True, exist_ok=True)
            return _result_path(task_dir, await run(context, *typed))

        return compute_async

    def compute_sync(context: ComputeContext, *typed: object) -> str:
        context.subtask_dir.mkdir(parents=True, exist_ok=True)
        return _result_path(task_dir, handler(context, *typed))

    return compute_sync


class ProviderService:
    """The ``golem_task_api.ProviderApp`` service: serves exactly one request."""

    def __init__(
        self,
        app: Provider,
        work_dir: Path,
        progress: ProgressService | None = None,
        app_loop: AppLoop | None = None,
    ) -> None:
        self._app = app
        self._work_dir = work_dir
        self._progress = progress
        self._app_loop = app_loop or AppLoop()
        self._busy = False
        self._busy_replying = False
        self._work: asyncio.Future[object] | None = None
        self._context: ComputeContext | None = None
        self.done = asyncio.Event()
        #: Set by Shutdown (or a signal): the process must now end, however the work ends.
        self.stop_requested = asyncio.Event()
        #: The process exit code: 0 unless the request failed or was cancelled.
        self.exit_code = EXIT_OK

    def _finish(self) -> None:
        self._busy_replying = False
        self.done.set()

    def _finish_shutdown(self) -> None:
        # A computation cancelled by this Shutdown still answers CANCELLED
        # before the server stops: its own reply sets ``done``.
        if not self._busy_replying:
            self.done.set()

    async def _run_once(self, what: str, work: asyncio.Future[object]) -> object:
        # Waits without propagating a cancellation of ``work`` (Shutdown), and
        # cancels ``work`` if this call itself is cancelled (server closing).
        self._work = work
        try:
            await asyncio.wait({work})
        finally:
            if not work.done():
                work.cancel()
        if work.cancelled():
            raise GRPCError(Status.CANCELLED, f"{what} cancelled by Shutdown")
        return work.result()

    def _claim(self) -> None:
        # As the call arrives, before its request is read: from then on it is
        # the provider's one request, even if its message turns out unreadable.
        # A second call is refused and changes nothing.
        if self._busy:
            raise GRPCError(Status.FAILED_PRECONDITION, "a provider serves one request only")
        self._busy = True
        self._busy_replying = True
        self.exit_code = EXIT_FAILED  # until the request succeeds

    async def compute(self, request: api.ComputeRequest) -> api.ComputeReply:
        """Compute: run the app's compute handler for one subtask."""
        task_id = safe_id(request.task_id, "task_id")
        subtask_id = safe_id(request.subtask_id, "subtask_id")
        params = parse_params(request.subtask_params_json, "subtask_params_json")
        handler = self._app.handler("compute")
        if handler is None:
            raise ConfigError("the app has no @provider.compute handler")
        typed = self._app.handler_args("compute", params, "subtask_params_json")
        sink = self._progress.sink(subtask_id) if self._progress is not None else None
        context = ComputeContext(task_id, subtask_id, params, self._work_dir, _progress=sink)
        self._context = context
        job = _with_files(handler, self._work_dir)
        work = asyncio.ensure_future(call(job, context, *typed, app_loop=self._app_loop))
        output = await self._run_once("computation", work)
        self.exit_code = EXIT_OK
        return api.ComputeReply(output_filepath=cast(str, output))

    async def run_benchmark(self, request: api.RunBenchmarkRequest) -> api.RunBenchmarkReply:
        """RunBenchmark: the app's score for this machine (1.0 without a handler)."""
        handler = self._app.handler("benchmark")
        score = 1.0
        if handler is not None:
            work = asyncio.ensure_future(call(handler, app_loop=self._app_loop))
            score = float(await self._run_once("benchmark", work))  # type: ignore[arg-type]
        self.exit_code = EXIT_OK
        return api.RunBenchmarkReply(score=score)

    def cancel(self) -> None:
        """Cancel a running computation: set the context's flag and cancel the work."""
        if self._context is not None:
            self._context.cancel()
        if self._work is not None and not self._work.done():
            self._work.cancel()

    async def shutdown(self, request: api.ShutdownRequest) -> api.ShutdownReply:
        """Shutdown: cancel any running work; the server stops after replying."""
        self.stop_requested.set()
        self.cancel()
        return api.ShutdownReply()

    def __mapping__(self) -> dict[str, Handler]:
        prefix = "/golem_task_api.ProviderApp/"
        return {
            prefix + "Compute": unary(
                "Compute", self.compute, api.ComputeRequest, api.ComputeReply,
                claim=self._claim, after_reply=self._finish,
            ),
            prefix + "RunBenchmark": unary(
                "RunBenchmark", self.run_benchmark, api.RunBenchmarkRequest,
                api.RunBenchmarkReply, claim=self._claim, after_reply=self._finish,
            ),
            prefix + "Shutdown": unary(
                "Shutdown", self.shutdown, api.ShutdownRequest, api.ShutdownReply,
                after_reply=self._finish_shutdown,
            ),
        }  # fmt: skip


class ProviderServer:
    """A running one-shot provider server, as yielded by :func:`serve_provider`."""

    def __init__(self, service: ProviderService, host: str, port: int) -> None:
        self._service = service
        self.host = host
        self.port = port

    async def wait(self) -> int:
        """Wait until the one request is answered; return the process exit code."""
        await self._service.done.wait()
        return self._service.exit_code

    async def wait_stop_requested(self) -> None:
        """Return once Shutdown was called or :meth:`cancel` was (the work may still run)."""
        await self._service.stop_requested.wait()

    def cancel(self) -> None:
        """Cancel the running computation and stop (SIGTERM does this in ``serve``)."""
        self._service.stop_requested.set()
        self._service.cancel()
        self._service.done.set()


@asynccontextmanager
async def serve_provider(
    app: Provider,
    *,
    work_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[ProviderServer]:
    """Serve ``app``'s ProviderApp and Health on ``host:port`` while the block runs.

    ``work_dir`` is the task's work dir (its ``subtask_inputs`` holds the
    resources). Await :meth:`ProviderServer.wait` for the one request.
    """
    if not isinstance(app, Provider):
        raise ConfigError(f"serve_provider needs a Provider, got {type(app).__name__}")
    if app.handler("compute") is None:
        raise ConfigError("the provider app has no @provider.compute handler")
    root = check_work_dir(Path(work_dir))
    app_loop = AppLoop()  # the app's async code runs there, never on our loop
    try:
        async with app_loop.lifespan(app):
            progress = ProgressService()
            progress.bind()
            service = ProviderService(app, root, progress, app_loop)
            server, bound = await start(
                [service, Health(("golem_task_api.ProviderApp", PROGRESS_SERVICE)), progress],
                host,
                port,
                root,
            )
            try:
                yield ProviderServer(service, host, bound)
            finally:
                service.cancel()
                progress.close()  # the Watch streams end before the server closes
                try:
                    await confirm_delivery(server)  # the reply is read before the process exits
                finally:
                    server.close()
                    await server.wait_closed()
    finally:
        app_loop.close()


async def run_provider(
    app: Provider,
    *,
    work_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[int], None] | None = None,
) -> int:
    """Serve one provider request to completion and return the exit code (0 = success).

    ``on_ready`` is called with the bound port once the server accepts calls.
    """
    async with serve_provider(app, work_dir=work_dir, host=host, port=port) as server:
        if on_ready is not None:
            on_ready(server.port)
        return await server.wait()
