"""How the task engine scales: CreateTask time, subtask cycles, requestor memory.

Run ``python benchmarks/engine_scale.py``. For each task size it starts a
real requestor (``python -m golem_apps.serve benchmarks.engine_scale ...``)
on a fresh work dir and drives it over loopback with RequestorClient, as a
node does: a subtask cycle is HasPendingSubtasks, NextSubtask, writing the
result file, Verify (the default verify). It prints CreateTask seconds,
then, sizes interleaved so that load from elsewhere hits them alike:

- cycles one at a time: cycles per second and the median
  NextSubtask+Verify latency;
- cycles with ``CONCURRENCY`` in flight (a node with that many providers,
  each its own node id): cycles per second, the median of ``ROUNDS`` rounds,
  and the requestor's CPU time per cycle;

and the requestor's peak RSS. :func:`measure` returns the same figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

from golem_apps import Part, Requestor, RequestorClient, TaskContext, VerifyResult
from golem_apps.constants import SUBTASK_OUTPUTS_DIR

ROOT = Path(__file__).resolve().parent.parent
SIZES = (100, 10_000, 100_000)
#: Cycles one at a time, per size.
CYCLES = 1000
#: Cycles in flight in the throughput rounds, and the rounds' count and length.
CONCURRENCY = 16
ROUNDS = 3
ROUND_CYCLES = 1000

#: The benchmark's app: ``parts`` parts, yielded by a generator.
requestor = Requestor("engine-scale", image="golem/engine-scale")


@requestor.task
def split(task: TaskContext) -> Iterator[Part]:
    """``parts`` parts with small params."""
    for i in range(int(task.params["parts"])):
        yield Part(params={"i": i, "frame": f"frame-{i:06d}"})


def _peak_rss_mib(pid: int) -> float:
    # VmHWM: the process's peak resident set size (Linux).
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


async def _start(work_dir: Path) -> tuple[subprocess.Popen[str], RequestorClient]:
    command = [sys.executable, "-m", "golem_apps.serve", "benchmarks.engine_scale", "requestor"]
    command += ["0", "--work-dir", str(work_dir)]
    popen = partial(subprocess.Popen, command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    process = await asyncio.to_thread(popen)
    assert process.stdout is not None
    line = await asyncio.to_thread(process.stdout.readline)
    if not line.startswith("requestor serving on "):
        process.kill()
        raise RuntimeError(f"the requestor did not start: {line!r}")
    port = int(line.rsplit(":", 1)[1])
    return process, await RequestorClient.connect("127.0.0.1", port)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Bench:
    """One task size: its own requestor, its tasks, its timings."""

    def __init__(self, parts: int, cycles: int, work_dir: Path) -> None:
        self.parts = parts
        self.cycles = cycles
        self.work_dir = work_dir
        # Each task stops before its last part (the one-off merge is not a
        # cycle); a size smaller than the cycles asked for gets more tasks.
        self.per_task = parts - 1
        self.next = 0  # the next cycle's number, over all phases
        self.latencies: list[float] = []
        self.sequential_seconds = 0.0
        self.rates: list[float] = []
        self.cpu_per_cycle: list[float] = []
        self.create_seconds = 0.0

    async def create(self, client: RequestorClient) -> None:
        """CreateTask (timed: the first task), then any extra tasks."""
        started = time.perf_counter()
        await client.create_task("scale-0", {"parts": self.parts})
        self.create_seconds = time.perf_counter() - started
        for n in range(1, -(-self.cycles // self.per_task)):
            await client.create_task(f"scale-{n}", {"parts": self.parts})

    async def cycle(self, client: RequestorClient, node: str = "node") -> float:
        """One subtask cycle; returns the NextSubtask+Verify latency (seconds)."""
        k = self.next
        self.next += 1
        task_id = f"scale-{k // self.per_task}"
        subtask_id = f"sub-{k}"
        assert await client.has_pending_subtasks(task_id)
        started = time.perf_counter()
        handed = await client.next_subtask(task_id, subtask_id, node)
        spent = time.perf_counter() - started
        assert handed is not None
        folder = self.work_dir / task_id / SUBTASK_OUTPUTS_DIR / subtask_id
        folder.mkdir(parents=True)
        (folder / "result.txt").write_text(handed.params["frame"])
        before = time.perf_counter()
        verdict = await client.verify(task_id, subtask_id)
        latency = spent + time.perf_counter() - before
        assert verdict.result is VerifyResult.SUCCESS, verdict
        return latency

    async def one_at_a_time(self, client: RequestorClient) -> None:
        """One sequential cycle, timed."""
        started = time.perf_counter()
        self.latencies.append(await self.cycle(client))
        self.sequential_seconds += time.perf_counter() - started

    async def in_flight(self, client: RequestorClient, pid: int, cycles: int) -> None:
        """``cycles`` cycles, CONCURRENCY at a time; records the rate and the CPU per cycle."""
        remaining = cycles

        async def provider(node: str) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await self.cycle(client, node)

        cpu = cpu_seconds(pid)
        started = time.perf_counter()
        await asyncio.gather(*(provider(f"node-{n}") for n in range(CONCURRENCY)))
        self.rates.append(cycles / (time.perf_counter() - started))
        self.cpu_per_cycle.append((cpu_seconds(pid) - cpu) / cycles)


async def _measure(
    sizes: Sequence[int], cycles: int, rounds: int, round_cycles: int
) -> dict[str, dict[str, float]]:
    with ExitStack() as stack:
        total = cycles + rounds * round_cycles
        benches = [
            _Bench(size, total, Path(stack.enter_context(tempfile.TemporaryDirectory())))
            for size in sizes
        ]
        servers = []
        try:
            for bench in benches:
                servers.append(await _start(bench.work_dir))
                await bench.create(servers[-1][1])
            pairs = list(zip(benches, servers, strict=True))
            # Round robin over the sizes: a noisy neighbour slows them all alike.
            for _ in range(cycles):
                for bench, (_, client) in pairs:
                    await bench.one_at_a_time(client)
            for _ in range(rounds):
                for bench, (process, client) in pairs:
                    await bench.in_flight(client, process.pid, round_cycles)
            return {
                str(bench.parts): {
                    "parts": bench.parts,
                    "create_task_s": bench.create_seconds,
                    "cycles": cycles,
                    "sequential_cycles_per_s": cycles / bench.sequential_seconds,
                    "cycle_latency_median_ms": statistics.median(bench.latencies) * 1000,
                    "concurrency": CONCURRENCY,
                    "cycles_per_s": statistics.median(bench.rates),
                    "cycles_per_s_min": min(bench.rates),
                    "cycles_per_s_max": max(bench.rates),
                    "requestor_cpu_ms_per_cycle": statistics.median(bench.cpu_per_cycle) * 1000,
                    "peak_rss_mib": _peak_rss_mib(process.pid),
                }
                for bench, (process, _) in pairs
            }
        finally:
            for process, client in servers:
                client.close()
                process.kill()
                process.wait()
                if process.stdout is not None:
                    process.stdout.close()


def measure(
    sizes: Sequence[int] = SIZES,
    cycles: int = CYCLES,
    rounds: int = ROUNDS,
    round_cycles: int = ROUND_CYCLES,
) -> dict[str, Any]:
    """The figures for each task size, plus the latency ratio of the largest to the smallest."""
    results = asyncio.run(_measure(sizes, cycles, rounds, round_cycles))
    smallest, largest = results[str(min(sizes))], results[str(max(sizes))]
    return {
        "sizes": results,
        "latency_ratio": largest["cycle_latency_median_ms"] / smallest["cycle_latency_median_ms"],
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Print the figures as a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--cycles", type=int, default=CYCLES)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--round-cycles", type=int, default=ROUND_CYCLES)
    args = parser.parse_args(argv)
    figures = measure(args.sizes, args.cycles, args.rounds, args.round_cycles)
    print(
        f"{'parts':>8} {'CreateTask s':>13} {'1 at a time/s':>14} {'median ms':>10}"
        f" {f'{CONCURRENCY} in flight/s':>16} {'CPU ms/cycle':>13} {'peak RSS MiB':>13}"
    )
    for row in figures["sizes"].values():
        print(
            f"{row['parts']:>8} {row['create_task_s']:>13.3f}"
            f" {row['sequential_cycles_per_s']:>14.0f} {row['cycle_latency_median_ms']:>10.2f}"
            f" {row['cycles_per_s']:>16.0f} {row['requestor_cpu_ms_per_cycle']:>13.2f}"
            f" {row['peak_rss_mib']:>13.1f}"
        )
    print(f"latency ratio largest/smallest: {figures['latency_ratio']:.2f}")


if __name__ == "__main__":
    main()
