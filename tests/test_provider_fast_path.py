"""The provider's fast start-up path: what it imports, its light messages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from golem_apps import ComputeContext, Provider, ProviderClient, run_provider
from tests.module_report import free_port, reporting_modules

#: Never on the provider's start-up path (the walls of the design, plus what
#: the fast path removed: betterproto and the generated code, anyio).
FORBIDDEN = (
    "sqlite3",
    "rich",
    "golem_apps.engine",
    "golem_apps.runner",
    "golem_apps.proto",
    "betterproto",
    "anyio",
    "importlib.metadata",  # golem_apps.__version__ is a literal
    "golem_apps._events",  # requestor-side names of golem_apps, loaded on first use
    "golem_apps._taskstatus",
    "golem_apps._contexts",  # verdicts and results, for the verify and merge handlers
    # Start-up costs the path avoids: argparse's formatters would import shutil
    # (and bz2, lzma); a str host would make getaddrinfo load the idna codec.
    "shutil",
    "encodings.idna",
)


async def start_provider(app: Provider, work_dir: Path) -> tuple[asyncio.Future[int], int]:
    """run_provider in a task; returns it and its port once it serves."""
    ready = asyncio.Event()
    port = free_port()
    server = asyncio.ensure_future(
        run_provider(app, work_dir=work_dir, port=port, on_ready=lambda _: ready.set())
    )
    await asyncio.wait_for(ready.wait(), 10)
    return server, port


@pytest.mark.anyio
@pytest.mark.parametrize("command", [["golem_apps.serve"], ["golem_apps", "serve"]])
async def test_provider_process_imports_nothing_forbidden(
    python: str, tmp_path: Path, command: list[str]
) -> None:
    """A whole provider cycle (Health, Compute, exit), then what was imported.

    Both forms: ``python -m golem_apps.serve`` and the ``golem-apps serve`` front door.
    """
    port = free_port()
    serve = [*command, "tests.apps.sample", "provider", str(port), "--work-dir", str(tmp_path)]
    async with (
        reporting_modules(python, *serve) as report,
        await ProviderClient.connect(port=port, timeout=30) as client,
    ):
        output = await client.compute("t1", "s1", {"text": "abc"}, timeout=30)
    modules = report.modules()
    assert (tmp_path / output).read_text() == "ABC"
    assert "golem_apps.server._provider" in modules  # the parsing works
    for name in FORBIDDEN:
        found = sorted(m for m in modules if m == name or m.startswith(name + "."))
        assert not found, f"the provider path imported {found}"


@pytest.mark.anyio
async def test_betterproto_client_against_light_server(tmp_path: Path) -> None:
    """The node's side uses generated messages; the provider answers with its own."""
    app = Provider()

    @app.compute
    def compute(ctx: ComputeContext) -> Path:
        out = ctx.subtask_dir / "out.txt"
        out.write_text(f"{ctx.task_id}/{ctx.subtask_id}/{ctx.params['n']}")
        return out

    server, port = await start_provider(app, tmp_path)
    async with await ProviderClient.connect(port=port, timeout=10) as client:
        output = await client.compute("tä", "s1", {"n": 3}, timeout=10)
    assert output == "s1/out.txt"
    assert (tmp_path / output).read_text() == "tä/s1/3"
    assert await asyncio.wait_for(server, 10) == 0


@pytest.mark.anyio
async def test_benchmark_score_and_bad_request(tmp_path: Path) -> None:
    app = Provider()

    @app.compute
    def compute(ctx: ComputeContext) -> Path:
        raise AssertionError("not called")

    @app.benchmark
    def benchmark() -> float:
        return 2.5

    for expected in (2.5, None):
        server, port = await start_provider(app, tmp_path)
        async with await ProviderClient.connect(port=port, timeout=10) as client:
            if expected is not None:
                assert await client.run_benchmark() == expected
            else:
                with pytest.raises(GRPCError) as info:
                    await client.compute("../x", "s", {}, timeout=10)
                assert info.value.status == Status.INVALID_ARGUMENT
        assert await asyncio.wait_for(server, 10) == (0 if expected is not None else 1)
