"""The one-shot provider server, in-process: one request, then it stops."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import anyio
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from golem_apps import ComputeContext, Provider, ProviderClient, run_provider, serve_provider
from tests.apps import sample

pytestmark = pytest.mark.anyio


async def test_compute_answers_once_then_the_server_stops(tmp_path: Path) -> None:
    async with serve_provider(sample.provider, work_dir=tmp_path) as server:
        async with await ProviderClient.connect(port=server.port) as client:
            output = await client.compute("t", "s1", {"text": "hi"})
        assert await server.wait() == 0
    assert output == "s1/result.txt"
    assert (tmp_path / output).read_text() == "HI"


async def test_failed_compute_is_internal_and_exit_code_non_zero(tmp_path: Path) -> None:
    async with serve_provider(sample.provider, work_dir=tmp_path) as server:
        async with await ProviderClient.connect(port=server.port) as client:
            with pytest.raises(GRPCError) as error:
                await client.compute("t", "s1", {"fail": True})
        assert await server.wait() == 1
    assert error.value.status is Status.INTERNAL
    assert error.value.message == "RuntimeError: asked to fail"  # the type named


async def test_benchmark_answers_once(tmp_path: Path) -> None:
    async with serve_provider(sample.provider, work_dir=tmp_path) as server:
        async with await ProviderClient.connect(port=server.port) as client:
            assert await client.run_benchmark() == 7.5
        assert await server.wait() == 0


async def test_shutdown_cancels_a_running_async_compute(tmp_path: Path) -> None:
    provider = Provider()
    started = threading.Event()  # the compute runs on a loop of its own, in another thread
    cancelled = threading.Event()

    @provider.compute
    async def compute(ctx: ComputeContext) -> str:
        started.set()
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return "never"

    async with serve_provider(provider, work_dir=tmp_path) as server:
        async with (
            await ProviderClient.connect(port=server.port) as computing,
            await ProviderClient.connect(port=server.port) as stopping,
            anyio.create_task_group() as group,
        ):
            outcome: list[GRPCError] = []

            async def run() -> None:
                try:
                    await computing.compute("t", "s", {})
                except GRPCError as exc:
                    outcome.append(exc)

            group.start_soon(run)
            assert await anyio.to_thread.run_sync(started.wait, 10)
            await stopping.shutdown()
        assert await server.wait() == 1
    assert outcome and outcome[0].status is Status.CANCELLED
    assert await anyio.to_thread.run_sync(cancelled.wait, 10)


async def test_sync_compute_sees_its_cancellation_flag(tmp_path: Path) -> None:
    async with serve_provider(sample.provider, work_dir=tmp_path) as server:
        async with (
            await ProviderClient.connect(port=server.port) as computing,
            await ProviderClient.connect(port=server.port) as stopping,
            anyio.create_task_group() as group,
        ):
            group.start_soon(lambda: _swallow(computing.compute("t", "s", {"sleep": 60})))
            while not (tmp_path / "s").exists():
                await anyio.sleep(0.01)
            await stopping.shutdown()
        assert await server.wait() == 1


async def _swallow(call: object) -> None:
    with contextlib.suppress(GRPCError):
        await call  # type: ignore[misc]


@pytest.mark.parametrize("escape", ["absolute", "symlink", "missing"])
async def test_result_outside_the_task_dir_fails(tmp_path: Path, escape: str) -> None:
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    provider = Provider()

    @provider.compute
    def compute(ctx: ComputeContext) -> Path:
        if escape == "absolute":
            return outside
        if escape == "missing":
            return ctx.subtask_dir / "nothing.txt"
        link = ctx.subtask_dir / "link.txt"
        link.symlink_to(outside)
        return link

    async with serve_provider(provider, work_dir=task_dir) as server:
        async with await ProviderClient.connect(port=server.port) as client:
            with pytest.raises(GRPCError) as error:
                await client.compute("t", "s", {})
        assert await server.wait() == 1
    assert error.value.status is Status.INTERNAL
    assert "outside the task dir" in (error.value.message or "") or "does not exist" in (
        error.value.message or ""
    )


async def test_run_provider_reports_its_port_and_exit_code(tmp_path: Path) -> None:
    ports: list[int] = []
    async with anyio.create_task_group() as group:
        codes: list[int] = []

        async def serve() -> None:
            codes.append(
                await run_provider(sample.provider, work_dir=tmp_path, on_ready=ports.append)
            )

        group.start_soon(serve)
        while not ports:
            await anyio.sleep(0.01)
        async with await ProviderClient.connect(port=ports[0]) as client:
            await client.shutdown()
    assert codes == [0]


async def test_a_second_request_is_refused_and_the_first_goes_on(tmp_path: Path) -> None:
    """A Compute or RunBenchmark during a computation: FAILED_PRECONDITION, the work unharmed."""
    release = threading.Event()
    provider = Provider()

    @provider.compute
    def compute(ctx: ComputeContext) -> Path:
        release.wait(30)
        out = ctx.subtask_dir / "out.txt"
        out.write_text("done")
        return out

    async with serve_provider(provider, work_dir=tmp_path) as server:
        async with (
            await ProviderClient.connect(port=server.port) as first,
            await ProviderClient.connect(port=server.port) as second,
            anyio.create_task_group() as group,
        ):
            outputs: list[str] = []

            async def run() -> None:
                outputs.append(await first.compute("t", "s", {}))

            group.start_soon(run)
            while not (tmp_path / "s").exists():
                await anyio.sleep(0.01)
            for call in (second.compute("t", "s2", {}), second.run_benchmark()):
                with pytest.raises(GRPCError) as error:
                    await call
                assert error.value.status is Status.FAILED_PRECONDITION
            with anyio.move_on_after(0.2) as waiting:
                await server.wait()
            assert waiting.cancelled_caught, "a refused second request ended the provider"
            release.set()
        assert await server.wait() == 0
    assert outputs == ["s/out.txt"]
