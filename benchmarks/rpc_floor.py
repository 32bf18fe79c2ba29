"""The floor under benchmark 3's subtask cycle: three trivial RPCs and a file write.

A subtask cycle of ``engine_scale`` is HasPendingSubtasks, NextSubtask,
writing the result file, then Verify, against a requestor process over
loopback. Here the same driver does three RunBenchmark calls around the
same file write, against a requestor process of the trivial app: what a
cycle costs with no engine work at all, one at a time and with
``engine_scale.CONCURRENCY`` in flight.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from golem_apps import RequestorClient

from .engine_scale import CONCURRENCY, cpu_seconds
from .provider_cycle import ROOT


class _Floor:
    def __init__(self, client: RequestorClient, work_dir: Path) -> None:
        self.client = client
        self.work_dir = work_dir
        self.next = 0

    async def cycle(self) -> None:
        k = self.next
        self.next += 1
        await self.client.run_benchmark()
        await self.client.run_benchmark()
        folder = self.work_dir / "t" / "subtask_outputs" / f"sub-{k}"
        folder.mkdir(parents=True)
        (folder / "result.txt").write_text(f"frame-{k:06d}")
        await self.client.run_benchmark()

    async def in_flight(self, cycles: int) -> float:
        remaining = cycles

        async def provider() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await self.cycle()

        started = time.perf_counter()
        await asyncio.gather(*(provider() for _ in range(CONCURRENCY)))
        return cycles / (time.perf_counter() - started)


async def _measure(work_dir: Path, cycles: int, rounds: int, round_cycles: int) -> dict[str, float]:
    command = [sys.executable, "-m", "golem_apps.serve", "benchmarks.apps.trivial", "requestor"]
    command += ["0", "--work-dir", str(work_dir)]
    popen = partial(subprocess.Popen, command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    process = await asyncio.to_thread(popen)
    try:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        port = int(line.rsplit(":", 1)[1])
        async with await RequestorClient.connect("127.0.0.1", port) as client:
            floor = _Floor(client, work_dir)
            await floor.cycle()  # warm-up
            started = time.perf_counter()
            for _ in range(cycles):
                await floor.cycle()
            sequential = cycles / (time.perf_counter() - started)
            rates, cpu = [], []
            for _ in range(rounds):
                before = cpu_seconds(process.pid)
                rates.append(await floor.in_flight(round_cycles))
                cpu.append((cpu_seconds(process.pid) - before) / round_cycles)
            return {
                "sequential_cycles_per_s": sequential,
                "cycles_per_s": statistics.median(rates),
                "requestor_cpu_ms_per_cycle": statistics.median(cpu) * 1000,
            }
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def measure(cycles: int = 1000, rounds: int = 3, round_cycles: int = 1000) -> dict[str, float]:
    """Cycles per second of three trivial RPCs and a file write: one at a time, and in flight."""
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_measure(Path(tmp), cycles, rounds, round_cycles))


if __name__ == "__main__":
    figures = measure()
    print(
        f"{figures['sequential_cycles_per_s']:.0f} cycles/s one at a time,"
        f" {figures['cycles_per_s']:.0f} cycles/s {CONCURRENCY} in flight"
        f" ({figures['requestor_cpu_ms_per_cycle']:.2f} ms of requestor CPU per cycle)"
    )
