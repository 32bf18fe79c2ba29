"""Baseline: a hand-written grpclib RequestorApp service (RunBenchmark) with Health.

What the dispatch benchmark compares golem_apps' decorator registry with:
grpclib handlers receiving and sending the generated betterproto messages,
no adapter, no registry.
"""

from __future__ import annotations

from typing import Any

from grpclib.const import Cardinality, Handler
from grpclib.server import Stream

from golem_apps.proto import golem_task_api as api
from golem_apps.proto.grpc.health import v1 as health

UNARY = Cardinality.UNARY_UNARY
SERVING = health.HealthCheckResponseServingStatus.from_string("SERVING")


class RequestorApp:
    """RunBenchmark answers a constant score; Health answers SERVING."""

    async def run_benchmark(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(api.RunBenchmarkReply(score=1.0))

    async def check(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(health.HealthCheckResponse(status=SERVING))

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/golem_task_api.RequestorApp/RunBenchmark": Handler(
                self.run_benchmark, UNARY, api.RunBenchmarkRequest, api.RunBenchmarkReply
            ),
            "/grpc.health.v1.Health/Check": Handler(
                self.check, UNARY, health.HealthCheckRequest, health.HealthCheckResponse
            ),
        }
