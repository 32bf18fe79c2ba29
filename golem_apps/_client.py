"""Typed async clients of the two apps, speaking plain Python values.

They wait for Health SERVING (polling, as a node does), support the
task-api's client-side TLS files and raise ``grpclib.exceptions.GRPCError``
for error statuses.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from grpclib.client import Channel, UnaryStreamMethod, UnaryUnaryMethod
from grpclib.exceptions import GRPCError, StreamTerminatedError

from . import _wire as wire
from ._contexts import Verdict, VerifyResult
from ._taskstatus import STATUS_SERVICE, TaskStatus, status_from_wire

#: How often a client polls Health while waiting for a server (the node's 0.1 s, halved).
POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class CreatedTask:
    """CreateTask's answer: the provider environment and its needs."""

    env_id: str
    prerequisites: dict[str, Any]
    min_memory_mib: float


@dataclass(frozen=True)
class ProgressReport:
    """A provider's progress, as its compute handler last reported it (``ctx.progress``)."""

    subtask_id: str
    fraction: float
    """From 0 to 1."""
    message: str
    beats: int
    """How many reports the computation made so far (0: none yet): a heartbeat counter."""


@dataclass(frozen=True)
class SubtaskAssignment:
    """NextSubtask's answer when a subtask was handed out."""

    params: dict[str, Any]
    resources: list[str]


T = TypeVar("T")
R = TypeVar("R", bound=wire.WireMessage)


@contextmanager
def _keeping_cancel_count() -> Iterator[None]:
    """Leave the calling task's cancellation count as it was when a grpclib call fails.

    grpclib stops a call whose connection broke (or whose deadline passed) by
    cancelling the calling task and raising its own error in place of the
    CancelledError, without ``Task.uncancel()``. The count left behind would
    make an enclosing anyio cancel scope take it for a pending cancellation and
    cancel the caller later, out of the blue.
    """
    task = asyncio.current_task()
    cancelling = task.cancelling() if task is not None else 0
    try:
        yield
    except Exception:
        while task is not None and task.cancelling() > cancelling:
            task.uncancel()
        raise


async def _rpc(call: Awaitable[T]) -> T:
    """Await one grpclib call under :func:`_keeping_cancel_count`."""
    with _keeping_cancel_count():
        return await call


async def _unary(
    channel: Channel,
    path: str,
    request: wire.WireMessage,
    reply_type: type[R],
    timeout: float | None = None,
) -> R:
    """One unary call with the light messages of :mod:`golem_apps._wire`."""
    method = UnaryUnaryMethod(channel, path, type(request), reply_type)
    return await _rpc(method(request, timeout=timeout))


#: grpc.health.v1.HealthCheckResponse.ServingStatus names, by number (from the generated class).
_SERVING_STATUS = {
    number: name
    for name, number in vars(wire.HealthCheckResponseServingStatus).items()
    if isinstance(number, int)
}


async def wait_serving(
    channel: Channel,
    address: str,
    timeout: float,
    *,
    delays: Iterable[float] | None = None,
    check: Callable[[], None] | None = None,
) -> None:
    """Poll Health/Check("") until SERVING; retry refused connections only, like a node.

    The first poll goes out at once; ``delays`` are the pauses between the
    next ones (default: every ``POLL_INTERVAL`` s). ``check`` is called before
    each poll; what it raises ends the wait (say, the server's process exited).
    A connection lost before the answer counts as refused: a socket that was
    listening before its server started (see :mod:`golem_apps.runner._process`)
    drops its waiting connections when that server's process exits.
    """
    path = "/grpc.health.v1.Health/Check"
    deadline = time.monotonic() + timeout
    pauses = iter(delays) if delays is not None else itertools.repeat(POLL_INTERVAL)
    while True:
        if check is not None:
            check()
        try:
            request = wire.HealthCheckRequest(service="")
            reply = await _unary(channel, path, request, wire.HealthCheckResponse, timeout)
        except (ConnectionError, OSError, StreamTerminatedError) as exc:
            channel.close()
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no server at {address} after {timeout:g} s: {exc}") from None
        else:
            if reply.status == wire.HealthCheckResponseServingStatus.SERVING:
                return
            if time.monotonic() >= deadline:
                status = _SERVING_STATUS.get(reply.status, str(reply.status))
                raise TimeoutError(f"server not SERVING after {timeout:g} s ({status})")
        await asyncio.sleep(next(pauses, POLL_INTERVAL))


class _Client:
    #: The gRPC service the client calls, as in the method paths.
    SERVICE = ""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def _call(
        self,
        rpc: str,
        request: wire.WireMessage,
        reply_type: type[R],
        timeout: float | None = None,
        *,
        service: str | None = None,
    ) -> R:
        path = f"/{service or self.SERVICE}/{rpc}"
        return await _unary(self.channel, path, request, reply_type, timeout)

    @classmethod
    async def connect(
        cls,
        host: str = "127.0.0.1",
        port: int = 50005,
        *,
        tls_dir: str | Path | None = None,
        timeout: float = 15.0,
    ) -> Self:
        """Connect and wait (up to ``timeout`` s) until the server's Health says SERVING.

        ``tls_dir`` holds ``task_api_client_key.pem``, ``task_api_client_cert.pem``
        and ``task_api_server_cert.pem``; without it the connection is plaintext.
        """
        ssl = None
        if tls_dir is not None:
            from ._tls import client_context

            ssl = client_context(Path(tls_dir))
        channel = Channel(host, port, ssl=ssl)
        try:
            await wait_serving(channel, f"{host}:{port}", timeout)
        except BaseException:
            channel.close()
            raise
        return cls(channel)

    async def offers(self, service: str, timeout: float | None = None) -> bool:
        """Whether the server serves ``service``, a full name (``golem_apps.ProviderProgress``).

        Asks Health/Check for that service: SERVING means yes; NOT_FOUND (or any
        other answer) no. Only Health is called, so asking never disturbs the
        server's other calls, whoever wrote it.
        """
        request = wire.HealthCheckRequest(service=service)
        try:
            path = "/grpc.health.v1.Health/Check"
            reply = await _unary(self.channel, path, request, wire.HealthCheckResponse, timeout)
        except GRPCError:
            return False
        return bool(reply.status == wire.HealthCheckResponseServingStatus.SERVING)

    def close(self) -> None:
        """Close the connection."""
        self.channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RequestorClient(_Client):
    """A client of a requestor app, as a node drives it."""

    SERVICE = "golem_task_api.RequestorApp"

    async def create_task(
        self, task_id: str, params: dict[str, Any] | None = None, max_subtasks: int = 0
    ) -> CreatedTask:
        """CreateTask with ``params`` as the task params JSON."""
        request = wire.CreateTaskRequest(
            task_id=task_id,
            max_subtasks_count=max_subtasks,
            task_params_json=json.dumps(params or {}),
        )
        reply = await self._call("CreateTask", request, wire.CreateTaskReply)
        prerequisites = json.loads(reply.prerequisites_json) if reply.prerequisites_json else {}
        infrastructure = reply.inf_requirements or wire.Infrastructure()
        return CreatedTask(reply.env_id, prerequisites, infrastructure.min_memory_mib)

    async def next_subtask(
        self, task_id: str, subtask_id: str, node_id: str = ""
    ) -> SubtaskAssignment | None:
        """NextSubtask; None for the empty reply (no subtask for this node now)."""
        request = wire.NextSubtaskRequest(
            task_id=task_id, subtask_id=subtask_id, opaque_node_id=node_id
        )
        subtask = (await self._call("NextSubtask", request, wire.NextSubtaskReply)).subtask
        if subtask is None:
            return None
        params = json.loads(subtask.subtask_params_json) if subtask.subtask_params_json else {}
        return SubtaskAssignment(params, subtask.resources)

    async def verify(self, task_id: str, subtask_id: str) -> Verdict:
        """Verify; the verdict's result is a :class:`VerifyResult`."""
        request = wire.VerifyRequest(task_id=task_id, subtask_id=subtask_id)
        reply = await self._call("Verify", request, wire.VerifyReply)
        return Verdict(VerifyResult(reply.result), reply.reason)

    async def discard_subtasks(self, task_id: str, subtask_ids: list[str]) -> list[str]:
        """DiscardSubtasks; the ids actually discarded."""
        request = wire.DiscardSubtasksRequest(task_id=task_id, subtask_ids=subtask_ids)
        reply = await self._call("DiscardSubtasks", request, wire.DiscardSubtasksReply)
        return reply.discarded_subtask_ids

    async def run_benchmark(self) -> float:
        """RunBenchmark; the score."""
        request = wire.RunBenchmarkRequest()
        return (await self._call("RunBenchmark", request, wire.RunBenchmarkReply)).score

    async def has_pending_subtasks(self, task_id: str) -> bool:
        """HasPendingSubtasks."""
        request = wire.HasPendingSubtasksRequest(task_id=task_id)
        reply = await self._call("HasPendingSubtasks", request, wire.HasPendingSubtasksReply)
        return reply.has_pending_subtasks

    async def abort_task(self, task_id: str) -> None:
        """AbortTask."""
        await self._call("AbortTask", wire.AbortTaskRequest(task_id=task_id), wire.AbortTaskReply)

    async def abort_subtask(self, task_id: str, subtask_id: str) -> None:
        """AbortSubtask."""
        request = wire.AbortSubtaskRequest(task_id=task_id, subtask_id=subtask_id)
        await self._call("AbortSubtask", request, wire.AbortSubtaskReply)

    async def shutdown(self) -> None:
        """Shutdown: the server replies, then stops."""
        await self._call("Shutdown", wire.ShutdownRequest(), wire.ShutdownReply)

    async def task_status(self, task_id: str) -> TaskStatus:
        """The task's status from golem_apps' own RequestorStatus service.

        Parts total and verified, parts by state, nodes, bans, retries. Only
        golem_apps requestors serve it: ask :meth:`offers` ("golem_apps.RequestorStatus")
        first; another app answers UNIMPLEMENTED. NOT_FOUND for an unknown task.
        """
        request = wire.TaskStatusRequest(task_id=task_id)
        reply = await self._call(
            "TaskStatus", request, wire.TaskStatusReply, service=STATUS_SERVICE
        )
        return status_from_wire(reply)


class ProviderClient(_Client):
    """A client of a one-shot provider app: one request per server."""

    SERVICE = "golem_task_api.ProviderApp"

    async def compute(
        self,
        task_id: str,
        subtask_id: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> str:
        """Compute; the result file's path relative to the provider's task dir."""
        request = wire.ComputeRequest(
            task_id=task_id, subtask_id=subtask_id, subtask_params_json=json.dumps(params or {})
        )
        reply = await self._call("Compute", request, wire.ComputeReply, timeout)
        return reply.output_filepath

    async def run_benchmark(self) -> float:
        """RunBenchmark; the score."""
        request = wire.RunBenchmarkRequest()
        return (await self._call("RunBenchmark", request, wire.RunBenchmarkReply)).score

    async def shutdown(self) -> None:
        """Shutdown: cancels a running computation; the server then exits."""
        await self._call("Shutdown", wire.ShutdownRequest(), wire.ShutdownReply)

    async def watch_progress(self) -> AsyncGenerator[ProgressReport, None]:
        """Stream the computation's progress (golem_apps' own ProviderProgress service).

        Yields the current state at once, then each new report; ends when the
        provider has answered its request (or its connection closes).
        """
        path = "/golem_apps.ProviderProgress/Watch"
        method = UnaryStreamMethod(self.channel, path, wire.WatchRequest, wire.ProgressUpdate)
        with _keeping_cancel_count():
            async with method.open() as stream:
                await stream.send_message(wire.WatchRequest(), end=True)
                async for update in stream:
                    yield ProgressReport(
                        update.subtask_id, update.fraction, update.message, update.beats
                    )
