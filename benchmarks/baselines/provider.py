"""Baseline: a minimal hand-written one-shot provider, grpclib + the generated messages.

What a developer would write without golem_apps: the ProviderApp service
(Compute only does real work) and Health, with the betterproto messages
generated in ``golem_apps/proto``. The generated modules are loaded from
their files so that the baseline does not pay for the ``golem_apps``
package's own ``__init__``.

Run: ``python benchmarks/baselines/provider.py PORT WORK_DIR``. Serves one
Compute (or Shutdown), then exits with 0 on success.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from grpclib.const import Cardinality, Handler
from grpclib.server import Server, Stream

PROTO = Path(__file__).resolve().parents[2] / "golem_apps" / "proto"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


api: Any = _load("baseline_golem_task_api", PROTO / "golem_task_api" / "__init__.py")
health: Any = _load("baseline_health", PROTO / "grpc" / "health" / "v1" / "__init__.py")


class Provider:
    """ProviderApp and Health in one object; ``done`` is set after the one request."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.done = asyncio.Event()
        self.ok = False

    async def check(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(health.HealthCheckResponse(status=1))  # SERVING

    async def compute(self, stream: Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert request is not None
        try:
            params = json.loads(request.subtask_params_json or "{}")
            subtask_dir = self.work_dir / request.subtask_id
            subtask_dir.mkdir(parents=True, exist_ok=True)
            out = subtask_dir / f"{request.subtask_id}.txt"
            out.write_text(str(params.get("text", "")).upper())
            await stream.send_message(
                api.ComputeReply(output_filepath=str(out.relative_to(self.work_dir)))
            )
            self.ok = True
        finally:
            self.done.set()

    async def shutdown(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(api.ShutdownReply())
        self.done.set()

    def __mapping__(self) -> dict[str, Handler]:
        p = "/golem_task_api.ProviderApp/"
        unary = Cardinality.UNARY_UNARY
        return {
            p + "Compute": Handler(self.compute, unary, api.ComputeRequest, api.ComputeReply),
            p + "Shutdown": Handler(self.shutdown, unary, api.ShutdownRequest, api.ShutdownReply),
            "/grpc.health.v1.Health/Check": Handler(
                self.check, unary, health.HealthCheckRequest, health.HealthCheckResponse
            ),
        }


async def main(port: int, work_dir: Path) -> int:
    provider = Provider(work_dir)
    server = Server([provider])
    await server.start("127.0.0.1", port)
    await provider.done.wait()
    server.close()
    await server.wait_closed()
    return 0 if provider.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2]))))
