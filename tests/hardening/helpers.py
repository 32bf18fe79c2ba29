"""Shared helpers of the hardening tests: a live in-process requestor and raw stubs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from grpclib.client import Channel

from golem_apps import Requestor, RequestorServer, serve_requestor
from golem_apps.proto import golem_task_api as api
from golem_apps.proto.grpc.health.v1 import (
    HealthCheckRequest,
    HealthCheckResponseServingStatus,
    HealthStub,
)


@dataclass
class Live:
    """A running requestor and a channel to it."""

    server: RequestorServer
    channel: Channel
    stub: api.RequestorAppStub

    async def healthy(self) -> bool:
        """Health/Check("") answers SERVING."""
        reply = await HealthStub(self.channel).check(HealthCheckRequest(service=""), timeout=10)
        return reply.status == HealthCheckResponseServingStatus.SERVING


@asynccontextmanager
async def live_requestor(app: Requestor, work_dir: Path) -> AsyncIterator[Live]:
    """Serve ``app`` on a free loopback port; yield it with a connected stub."""
    async with serve_requestor(app, work_dir=work_dir, host="127.0.0.1", port=0) as server:
        channel = Channel("127.0.0.1", server.port)
        try:
            yield Live(server, channel, api.RequestorAppStub(channel))
        finally:
            channel.close()


def tree(root: Path) -> set[str]:
    """Every path under ``root``, relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}
