"""The RequestorApp binding: RPCs in, engine calls out, and the long-lived server."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from anyio import to_thread
from grpclib.const import Handler

from .. import _wire as wire
from .._contexts import MergeContext, Verdict, VerifyContext
from .._events import Event
from .._exceptions import ConfigError, InvalidArgument, InvalidTask
from .._handlers import call, iterate_parts
from .._requestor import Requestor
from .._task import Part, TaskContext
from .._taskstatus import TaskStatus
from .._validate import parse_params, safe_id, safe_name
from ..constants import SUBTASK_INPUTS_DIR, SUBTASK_OUTPUTS_DIR, TASK_INPUTS_DIR, TASK_OUTPUTS_DIR
from ..engine import Engine, Hooks, open_engine
from ._health import Health
from ._listen import check_work_dir, confirm_delivery, start
from ._observe import emit, observed
from ._task_status import SERVICE as STATUS_SERVICE
from ._task_status import StatusService
from ._unary import unary

log = logging.getLogger("golem_apps.requestor")

_TASK_FOLDERS = (TASK_INPUTS_DIR, SUBTASK_INPUTS_DIR, TASK_OUTPUTS_DIR, SUBTASK_OUTPUTS_DIR)


def _prepare_task_dir(task_dir: Path) -> None:
    # The node creates these before CreateTask; create any it did not.
    for folder in _TASK_FOLDERS:
        (task_dir / folder).mkdir(parents=True, exist_ok=True)


async def _checked_parts(parts: AsyncIterator[Part]) -> AsyncIterator[Part]:
    """The split handler's parts, each name and resource checked as one safe path component.

    Resource names (and part names, which name dependency resources) become
    file names under the task dir: a bad one, which may come from the task
    params, fails CreateTask with INVALID_ARGUMENT instead of escaping it.
    """
    index = 0
    async for part in parts:
        try:
            if part.name is not None:
                safe_name(part.name, f"part {index}: name")
            if isinstance(part.resources, str):
                raise InvalidArgument(
                    f"part {index}: resources must be a list of names, not a string"
                )
            for position, resource in enumerate(part.resources):
                if not isinstance(resource, str):
                    raise InvalidArgument(
                        f"part {index}: resources[{position}] must be a string, "
                        f"not {type(resource).__name__}"
                    )
                safe_name(resource, f"part {index}: resources[{position}]")
        except InvalidArgument as exc:
            raise InvalidTask(f"the task handler returned a bad part: {exc}") from None
        yield part
        index += 1


def hooks_for(app: Requestor) -> Hooks:
    """The engine's view of the app's verify and merge handlers."""
    verify = app.handler("verify")
    merge = app.handler("merge")
    compare = app.handler("compare")

    async def run_verify(context: VerifyContext) -> Verdict:
        assert verify is not None
        return Verdict.coerce(await call(verify, context))

    async def run_merge(context: MergeContext) -> None:
        assert merge is not None
        await call(merge, context)

    async def run_compare(a: VerifyContext, b: VerifyContext) -> bool:
        assert compare is not None
        return bool(await call(compare, a, b))

    async def run_finished(task_id: str) -> None:
        await emit(app, Event("task_finished", task_id))

    return Hooks(
        finished=run_finished if app.listeners.get("task_finished") else None,
        verify=run_verify if verify is not None else None,
        merge=run_merge if merge is not None else None,
        max_retries=app.task_options.max_retries,
        redundancy=app.task_options.redundancy,
        ban_after=app.task_options.ban_after,
        compare=run_compare if compare is not None else None,
    )


class RequestorService:
    """The ``golem_task_api.RequestorApp`` service of one app over one engine."""

    def __init__(
        self,
        app: Requestor,
        engine: Engine,
        work_dir: Path,
        on_shutdown: Callable[[], None],
    ) -> None:
        self._app = app
        self._engine = engine
        self._work_dir = work_dir
        self._on_shutdown = on_shutdown

    async def create_task(self, request: wire.CreateTaskRequest) -> wire.CreateTaskReply:
        """CreateTask: split the task with the app's handler and record its parts."""
        task_id = safe_id(request.task_id, "task_id")
        params = parse_params(request.task_params_json, "task_params_json")
        if request.max_subtasks_count < 0:
            raise InvalidArgument(
                f"max_subtasks_count must not be negative (got {request.max_subtasks_count})"
            )
        split = self._app.handler("task")
        if split is None:
            raise ConfigError("the app has no @requestor.task handler")
        # In a thread: the first typed validation imports pydantic (a few hundred ms).
        typed = await to_thread.run_sync(self._app.handler_args, "task", params, "task_params_json")
        task_dir = self._work_dir / task_id
        await to_thread.run_sync(_prepare_task_dir, task_dir)
        task = TaskContext(task_id, params, task_dir, request.max_subtasks_count)
        await self._engine.create_task(task, _checked_parts(iterate_parts(split, task, *typed)))
        info = self._app.info
        return wire.CreateTaskReply(
            env_id=info.env_id,
            prerequisites_json=json.dumps(info.provider_prerequisites),
            inf_requirements=wire.Infrastructure(min_memory_mib=info.min_memory_mib),
        )

    async def next_subtask(self, request: wire.NextSubtaskRequest) -> wire.NextSubtaskReply:
        """NextSubtask: a ready part for this node, or the empty reply."""
        task_id = safe_id(request.task_id, "task_id")
        subtask_id = safe_id(request.subtask_id, "subtask_id")
        assignment = await self._engine.next_subtask(task_id, subtask_id, request.opaque_node_id)
        if assignment is None:
            return wire.NextSubtaskReply()
        return wire.NextSubtaskReply(
            subtask=wire.SubtaskReply(
                subtask_params_json=json.dumps(assignment.params),
                resources=list(assignment.resources),
            )
        )

    async def verify(self, request: wire.VerifyRequest) -> wire.VerifyReply:
        """Verify: the engine checks the result and runs the app's verify hook."""
        task_id = safe_id(request.task_id, "task_id")
        subtask_id = safe_id(request.subtask_id, "subtask_id")
        verdict = await self._engine.verify(task_id, subtask_id)
        return wire.VerifyReply(result=int(verdict.result), reason=verdict.reason)

    async def discard_subtasks(
        self, request: wire.DiscardSubtasksRequest
    ) -> wire.DiscardSubtasksReply:
        """DiscardSubtasks: the ids actually discarded, dependents included."""
        task_id = safe_id(request.task_id, "task_id")
        subtask_ids = [
            safe_id(subtask_id, f"subtask_ids[{index}]")
            for index, subtask_id in enumerate(request.subtask_ids)
        ]
        discarded = await self._engine.discard_subtasks(task_id, subtask_ids)
        return wire.DiscardSubtasksReply(discarded_subtask_ids=discarded)

    async def run_benchmark(self, request: wire.RunBenchmarkRequest) -> wire.RunBenchmarkReply:
        """RunBenchmark: the app's benchmark score, 1.0 without a handler."""
        benchmark = self._app.handler("benchmark")
        score = 1.0 if benchmark is None else float(await call(benchmark))
        return wire.RunBenchmarkReply(score=score)

    async def has_pending_subtasks(
        self, request: wire.HasPendingSubtasksRequest
    ) -> wire.HasPendingSubtasksReply:
        """HasPendingSubtasks."""
        task_id = safe_id(request.task_id, "task_id")
        pending = await self._engine.has_pending_subtasks(task_id)
        return wire.HasPendingSubtasksReply(has_pending_subtasks=pending)

    async def abort_task(self, request: wire.AbortTaskRequest) -> wire.AbortTaskReply:
        """AbortTask."""
        await self._engine.abort_task(safe_id(request.task_id, "task_id"))
        return wire.AbortTaskReply()

    async def abort_subtask(self, request: wire.AbortSubtaskRequest) -> wire.AbortSubtaskReply:
        """AbortSubtask."""
        task_id = safe_id(request.task_id, "task_id")
        subtask_id = safe_id(request.subtask_id, "subtask_id")
        await self._engine.abort_subtask(task_id, subtask_id)
        return wire.AbortSubtaskReply()

    async def shutdown(self, request: wire.ShutdownRequest) -> wire.ShutdownReply:
        """Shutdown: answered first; the server stops once the reply is out."""
        return wire.ShutdownReply()

    def __mapping__(self) -> dict[str, Handler]:
        methods: dict[str, tuple[Callable[[Any], Awaitable[Any]], type, type]] = {
            "CreateTask": (self.create_task, wire.CreateTaskRequest, wire.CreateTaskReply),
            "NextSubtask": (self.next_subtask, wire.NextSubtaskRequest, wire.NextSubtaskReply),
            "Verify": (self.verify, wire.VerifyRequest, wire.VerifyReply),
            "DiscardSubtasks": (
                self.discard_subtasks,
                wire.DiscardSubtasksRequest,
                wire.DiscardSubtasksReply,
            ),
            "RunBenchmark": (self.run_benchmark, wire.RunBenchmarkRequest, wire.RunBenchmarkReply),
            "HasPendingSubtasks": (
                self.has_pending_subtasks,
                wire.HasPendingSubtasksRequest,
                wire.HasPendingSubtasksReply,
            ),
            "AbortTask": (self.abort_task, wire.AbortTaskRequest, wire.AbortTaskReply),
            "AbortSubtask": (self.abort_subtask, wire.AbortSubtaskRequest, wire.AbortSubtaskReply),
            "Shutdown": (self.shutdown, wire.ShutdownRequest, wire.ShutdownReply),
        }
        mapping = {}
        for rpc, (method, request_type, reply_type) in methods.items():
            override = self._app.rpcs.get(rpc)
            if override is not None:
                # An override speaks the generated (betterproto) messages, its public types:
                # imported only then (some 60 ms of a requestor's start-up).
                from ..proto import golem_task_api as api

                method = partial(override, work_dir=self._work_dir)
                request_type = getattr(api, request_type.__name__)
                reply_type = getattr(api, reply_type.__name__)
            mapping[f"/golem_task_api.RequestorApp/{rpc}"] = unary(
                rpc,
                observed(self._app, rpc, method),
                request_type,
                reply_type,
                after_reply=self._on_shutdown if rpc == "Shutdown" else None,
            )
        return mapping


@dataclass
class RequestorServer:
    """A running requestor server, as yielded by :func:`serve_requestor`."""

    host: str
    port: int
    work_dir: Path
    _stop: anyio.Event = field(default_factory=anyio.Event, repr=False)
    _engine: Engine | None = field(default=None, repr=False)

    async def task_status(self, task_id: str) -> TaskStatus:
        """The status of one of the server's tasks now: parts by state, nodes, bans, retries.

        Raises TaskNotFound for an unknown task. Other processes read the same
        from ``<work_dir>/<task_id>/status.json`` (:func:`golem_apps.read_task_status`).
        """
        assert self._engine is not None
        return await self._engine.task_status(task_id)

    def request_shutdown(self) -> None:
        """Ask the server to stop, as the Shutdown RPC does."""
        self._stop.set()

    @property
    def shutdown_requested(self) -> bool:
        """True once Shutdown was called or :meth:`request_shutdown` was."""
        return self._stop.is_set()

    async def wait_shutdown(self) -> None:
        """Return once Shutdown was called (or :meth:`request_shutdown`)."""
        await self._stop.wait()


@asynccontextmanager
async def serve_requestor(
    app: Requestor,
    *,
    work_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[RequestorServer]:
    """Serve ``app``'s RequestorApp, its status service and Health while the block runs.

    They listen on ``host:port``; ``port=0`` picks a free port (read it from
    the yielded server). TLS is on when the work dir holds the three TLS files.
    The app's lifespan runs around the server. Leaving the block stops the
    server; it installs no signal handler and never exits the process.
    """
    if not isinstance(app, Requestor):
        raise ConfigError(f"serve_requestor needs a Requestor, got {type(app).__name__}")
    if app.handler("task") is None and "CreateTask" not in app.rpcs:
        raise ConfigError(f"requestor app {app.info.name!r} has no @requestor.task handler")
    root = check_work_dir(Path(work_dir))
    async with app.run_lifespan(), open_engine(root, hooks_for(app)) as engine:
        handle = RequestorServer(host, 0, root, _engine=engine)
        service = RequestorService(app, engine, root, handle.request_shutdown)
        health = Health(("golem_task_api.RequestorApp", STATUS_SERVICE))
        status = StatusService(engine)
        server, handle.port = await start([service, status, health], host, port, root)
        log.info("requestor %r serving on %s:%d", app.info.name, host, handle.port)
        try:
            yield handle
        finally:
            try:
                await confirm_delivery(server)  # Shutdown's reply is read before we stop
            finally:
                server.close()
                await server.wait_closed()
