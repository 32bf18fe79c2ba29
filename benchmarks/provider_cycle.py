"""Benchmark 1: the provider one-shot cycle, spawn -> Health SERVING -> Compute reply -> exit.

golem_apps (``python -m golem_apps.serve benchmarks.apps.trivial provider PORT``)
against the hand-written baseline in ``benchmarks/baselines/provider.py``.
The driver polls Health every 2 ms (a node polls every 100 ms; polling
faster shows the real start-up time) and sends Compute as soon as it is SERVING.
"""

from __future__ import annotations

import asyncio
import compileall
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from grpclib.client import Channel

from golem_apps.proto import golem_task_api as api
from golem_apps.proto.grpc.health.v1 import (
    HealthCheckRequest,
    HealthCheckResponseServingStatus,
    HealthStub,
)

from ._harness import Comparison, Sample, compare

ROOT = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.002
#: Give up on a cycle after this long: a broken server must not hang the benchmark.
CYCLE_TIMEOUT = 30.0


def ensure_bytecode() -> None:
    """Write the .pyc files of golem_apps (generated code included) and benchmarks.

    A deployed app is pip-installed, which compiles them; here the sources
    may be fresh and PYTHONDONTWRITEBYTECODE set, and every process would then
    compile them again. Both sides of every benchmark get cached bytecode.
    """
    for package in ("golem_apps", "benchmarks"):
        compileall.compile_dir(ROOT / package, quiet=1)


def free_port() -> int:
    """A port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def golem_apps_command(port: int, work_dir: Path) -> list[str]:
    """The provider as a node starts it, through golem_apps.serve."""
    return [
        sys.executable, "-m", "golem_apps.serve", "benchmarks.apps.trivial", "provider",
        str(port), "--work-dir", str(work_dir),
    ]  # fmt: skip


def baseline_command(port: int, work_dir: Path) -> list[str]:
    """The hand-written grpclib + betterproto provider."""
    return [sys.executable, str(ROOT / "benchmarks" / "baselines" / "provider.py"), str(port),
            str(work_dir)]  # fmt: skip


async def _wait_serving(port: int, deadline: float) -> None:
    channel = Channel("127.0.0.1", port)
    stub = HealthStub(channel)
    try:
        while True:
            try:
                reply = await stub.check(HealthCheckRequest(service=""))
            except (ConnectionError, OSError):
                channel.close()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no provider on port {port}") from None
                await asyncio.sleep(POLL_SECONDS)
                continue
            if reply.status != HealthCheckResponseServingStatus.SERVING:
                raise RuntimeError(f"provider answered {reply.status!r}")
            return
    finally:
        channel.close()


async def cycle(command: Sequence[str], port: int, work_dir: Path) -> Sample:
    """One provider process from spawn to exit; the time of each step since spawn."""
    start = time.perf_counter()
    deadline = time.monotonic() + CYCLE_TIMEOUT
    proc = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # A session of its own, as a node's container has: with autogroup
        # scheduling the child then does not share a CPU share with this
        # driver's polling (see benchmarks/runner.py).
        start_new_session=True,
    )
    try:
        await _wait_serving(port, deadline)
        serving = time.perf_counter() - start
        channel = Channel("127.0.0.1", port)
        try:
            reply = await api.ProviderAppStub(channel).compute(
                api.ComputeRequest(
                    task_id="task", subtask_id=uuid.uuid4().hex, subtask_params_json='{"text":"x"}'
                ),
                timeout=CYCLE_TIMEOUT,
            )
        finally:
            channel.close()
        replied = time.perf_counter() - start
        code = await asyncio.wait_for(proc.wait(), CYCLE_TIMEOUT)
        exited = time.perf_counter() - start
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = await proc.stderr.read() if proc.stderr else b""
    if code != 0 or not (work_dir / reply.output_filepath).read_text() == "X":
        raise RuntimeError(f"provider cycle failed (exit {code}): {stderr.decode()[-2000:]}")
    return {"to SERVING": serving, "to reply": replied, "to exit": exited}


def cycle_runner(
    runner: asyncio.Runner, make_command: Callable[[int, Path], list[str]], work_dir: Path
) -> Callable[[], Sample]:
    """A no-argument function running one cycle of ``make_command`` on a fresh port."""

    def run() -> Sample:
        port = free_port()
        return runner.run(cycle(make_command(port, work_dir), port, work_dir))

    return run


def run(rounds: int = 20, warmup: int = 2) -> dict[str, Comparison]:
    """golem_apps (A) against the baseline (B), ``rounds`` interleaved cycles each."""
    ensure_bytecode()
    with tempfile.TemporaryDirectory() as tmp, asyncio.Runner() as runner:
        work_dir = Path(tmp)
        (work_dir / "subtask_inputs").mkdir()
        return compare(
            cycle_runner(runner, golem_apps_command, work_dir),
            cycle_runner(runner, baseline_command, work_dir),
            rounds=rounds,
            warmup=warmup,
        )


if __name__ == "__main__":
    from ._harness import format_comparison

    print(format_comparison("provider cycle", "golem_apps", "baseline", run()))
