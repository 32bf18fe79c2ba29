"""Typed async clients of the two apps, speaking plain Python values.

They wait for Health SERVING (polling, as a node does), support the
task-api's client-side TLS files and raise ``grpclib.exceptions.GRPCError``
for error statuses.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from grpclib.client import Channel

from ._contexts import Verdict, VerifyResult
from .proto import golem_task_api as api
from .proto.grpc.health.v1 import (
    HealthCheckRequest,
    HealthCheckResponseServingStatus,
    HealthStub,
)

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


async def wait_serving(channel: Channel, address: str, timeout: float) -> None:
    """Poll Health/Check("") until SERVING; retry refused connections only, like a node."""
    stub = HealthStub(channel)
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = await _rpc(stub.check(HealthCheckRequest(service=""), timeout=timeout))
        except (ConnectionError, OSError) as exc:
            channel.close()
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no server at {address} after {timeout:g} s: {exc}") from None
        else:
            if reply.status == HealthCheckResponseServingStatus.SERVING:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"server not SERVING after {timeout:g} s ({reply.status.name})")
        await asyncio.sleep(POLL_INTERVAL)


class _Client:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel

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

    def __init__(self, channel: Channel) -> None:
        super().__init__(channel)
        self._stub = api.RequestorAppStub(channel)

    async def create_task(
        self, task_id: str, params: dict[str, Any] | None = None, max_subtasks: int = 0
    ) -> CreatedTask:
        """CreateTask with ``params`` as the task params JSON."""
        reply = await _rpc(
            self._stub.create_task(
                api.CreateTaskRequest(
                    task_id=task_id,
                    max_subtasks_count=max_subtasks,
                    task_params_json=json.dumps(params or {}),
                )
            )
        )
        prerequisites = json.loads(reply.prerequisites_json) if reply.prerequisites_json else {}
        return CreatedTask(reply.env_id, prerequisites, reply.inf_requirements.min_memory_mib)

    async def next_subtask(
        self, task_id: str, subtask_id: str, node_id: str = ""
    ) -> SubtaskAssignment | None:
        """NextSubtask; None for the empty reply (no subtask for this node now)."""
        reply = await _rpc(
            self._stub.next_subtask(
                api.NextSubtaskRequest(
                    task_id=task_id, subtask_id=subtask_id, opaque_node_id=node_id
                )
            )
        )
        import betterproto

        name, subtask = betterproto.which_one_of(reply, "subtask_oneof")
        if not name or subtask is None:
            return None
        assert isinstance(subtask, api.SubtaskReply)
        params = json.loads(subtask.subtask_params_json) if subtask.subtask_params_json else {}
        return SubtaskAssignment(params, list(subtask.resources))

    async def verify(self, task_id: str, subtask_id: str) -> Verdict:
        """Verify; the verdict's result is a :class:`VerifyResult`."""
        reply = await _rpc(
            self._stub.verify(api.VerifyRequest(task_id=task_id, subtask_id=subtask_id))
        )
        return Verdict(VerifyResult(int(reply.result)), reply.reason)

    async def discard_subtasks(self, task_id: str, subtask_ids: list[str]) -> list[str]:
        """DiscardSubtasks; the ids actually discarded."""
        reply = await _rpc(
            self._stub.discard_subtasks(
                api.DiscardSubtasksRequest(task_id=task_id, subtask_ids=list(subtask_ids))
            )
        )
        return list(reply.discarded_subtask_ids)

    async def run_benchmark(self) -> float:
        """RunBenchmark; the score."""
        return (await _rpc(self._stub.run_benchmark(api.RunBenchmarkRequest()))).score

    async def has_pending_subtasks(self, task_id: str) -> bool:
        """HasPendingSubtasks."""
        reply = await _rpc(
            self._stub.has_pending_subtasks(api.HasPendingSubtasksRequest(task_id=task_id))
        )
        return reply.has_pending_subtasks

    async def abort_task(self, task_id: str) -> None:
        """AbortTask."""
        await _rpc(self._stub.abort_task(api.AbortTaskRequest(task_id=task_id)))

    async def abort_subtask(self, task_id: str, subtask_id: str) -> None:
        """AbortSubtask."""
        await _rpc(
            self._stub.abort_subtask(
                api.AbortSubtaskRequest(task_id=task_id, subtask_id=subtask_id)
            )
        )

    async def shutdown(self) -> None:
        """Shutdown: the server replies, then stops."""
        await _rpc(self._stub.shutdown(api.ShutdownRequest()))


class ProviderClient(_Client):
    """A client of a one-shot provider app: one request per server."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(channel)
        self._stub = api.ProviderAppStub(channel)

    async def compute(
        self,
        task_id: str,
        subtask_id: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> str:
        """Compute; the result file's path relative to the provider's task dir."""
        reply = await _rpc(
            self._stub.compute(
                api.ComputeRequest(
                    task_id=task_id,
                    subtask_id=subtask_id,
                    subtask_params_json=json.dumps(params or {}),
                ),
                timeout=timeout,
            )
        )
        return reply.output_filepath

    async def run_benchmark(self) -> float:
        """RunBenchmark; the score."""
        return (await _rpc(self._stub.run_benchmark(api.RunBenchmarkRequest()))).score

    async def shutdown(self) -> None:
        """Shutdown: cancels a running computation; the server then exits."""
        await _rpc(self._stub.shutdown(api.ShutdownRequest()))

    async def watch_progress(self) -> AsyncGenerator[ProgressReport, None]:
        """Stream the computation's progress (golem_apps' own ProviderProgress service).

        Yields the current state at once, then each new report; ends when the
        provider has answered its request (or its connection closes).
        """
        from .proto.golem_apps import ProviderProgressStub, WatchRequest

        with _keeping_cancel_count():
            async for update in ProviderProgressStub(self.channel).watch(WatchRequest()):
                yield ProgressReport(
                    update.subtask_id, update.fraction, update.message, update.beats
                )
