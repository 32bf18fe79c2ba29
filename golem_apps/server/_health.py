"""The standard gRPC health service (grpc.health.v1), which a Golem node polls."""

from __future__ import annotations

import asyncio

from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

# The light messages (same bytes as golem_apps.proto's): the provider must
# answer Health without paying for betterproto's import.
from .._wire import HealthCheckRequest, HealthCheckResponse, HealthCheckResponseServingStatus
from ._unary import recv_request


class Health:
    """Answers SERVING for ``""`` and for each named service, from the moment it serves."""

    def __init__(self, services: tuple[str, ...] = ()) -> None:
        self._services = frozenset(("", *services))

    def _status(self, request: HealthCheckRequest) -> HealthCheckResponse:
        if request.service not in self._services:
            raise GRPCError(Status.NOT_FOUND, f"unknown service {request.service!r}")
        return HealthCheckResponse(status=HealthCheckResponseServingStatus.SERVING)

    async def check(self, stream: Stream[HealthCheckRequest, HealthCheckResponse]) -> None:
        """Health/Check."""
        request = await recv_request(stream)
        await stream.send_message(self._status(request))

    async def watch(self, stream: Stream[HealthCheckRequest, HealthCheckResponse]) -> None:
        """Health/Watch: the status once, then the stream stays open until the server stops."""
        request = await recv_request(stream)
        await stream.send_message(self._status(request))
        await asyncio.Event().wait()

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/grpc.health.v1.Health/Check": Handler(
                self.check, Cardinality.UNARY_UNARY, HealthCheckRequest, HealthCheckResponse
            ),
            "/grpc.health.v1.Health/Watch": Handler(
                self.watch, Cardinality.UNARY_STREAM, HealthCheckRequest, HealthCheckResponse
            ),
        }
