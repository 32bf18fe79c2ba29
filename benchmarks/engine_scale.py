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

and the requestor's peak RSS. The baseline, interleaved with the sizes in
every phase, is the same driver cycle with three trivial RunBenchmark calls
instead (against ``benchmarks.apps.trivial``): what a cycle costs with no
engine work at all. :func:`measure` returns the same figures.
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
#: Nine rounds: the machine is shared, and a round's rate moves with whatever else
#: runs; the sizes and the floor take turns within each round (see ``rates``).
ROUNDS = 9
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


async def _start(work_dir: Path, app: str) -> tuple[subprocess.Popen[str], RequestorClient]:
    command = [sys.executable, "-m", "golem_apps.serve", app, "requestor"]
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
    """One requestor process under one kind of cycle, with its timings."""

    app = "benchmarks.engine_scale"

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.next = 0  # the next cycle's number, over all phases
        self.latencies: list[float] = []
        self.sequential_seconds = 0.0
        self.rates: list[float] = []
        self.cpu_per_cycle: list[float] = []

    async def create(self, client: RequestorClient) -> None:
        """Prepare the requestor for the cycles."""

    async def cycle(self, client: RequestorClient, node: str = "node") -> float:
        """One cycle; returns the latency the figures quote (seconds)."""
        raise NotImplementedError

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

    def figures(self, cycles: int) -> dict[str, Any]:
        """The cycle figures of both phases."""
        return {
            "cycles": cycles,
            "sequential_cycles_per_s": cycles / self.sequential_seconds,
            "cycle_latency_median_ms": statistics.median(self.latencies) * 1000,
            "concurrency": CONCURRENCY,
            "cycles_per_s": statistics.median(self.rates),
            "cycles_per_s_min": min(self.rates),
            "cycles_per_s_max": max(self.rates),
            "requestor_cpu_ms_per_cycle": statistics.median(self.cpu_per_cycle) * 1000,
            # Each round's rate, in round order: round i of every size and of the floor
            # ran back to back, so their ratios pair measurements taken under one load.
            "rates": list(self.rates),
        }


class _EngineBench(_Bench):
    """One task size: subtask cycles against the durable engine."""

    def __init__(self, parts: int, cycles: int, work_dir: Path) -> None:
        super().__init__(work_dir)
        self.parts = parts
        self.cycles = cycles
        # Each task stops before its last part (the one-off merge is not a
        # cycle); a size smaller than the cycles asked for gets more tasks.
        self.per_task = parts - 1
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


class _FloorBench(_Bench):
    """The baseline: the same driver cycle with three trivial calls, no engine work."""

    app = "benchmarks.apps.trivial"

    async def cycle(self, client: RequestorClient, node: str = "node") -> float:
        """RunBenchmark twice, the same file write, RunBenchmark; the latency of the last two."""
        k = self.next
        self.next += 1
        await client.run_benchmark()
        started = time.perf_counter()
        await client.run_benchmark()
        spent = time.perf_counter() - started
        folder = self.work_dir / "t" / SUBTASK_OUTPUTS_DIR / f"sub-{k}"
        folder.mkdir(parents=True)
        (folder / "result.txt").write_text(f"frame-{k:06d}")
        before = time.perf_counter()
        await client.run_benchmark()
        return spent + time.perf_counter() - before


async def _measure(
    sizes: Sequence[int], cycles: int, rounds: int, round_cycles: int
) -> dict[str, Any]:
    with ExitStack() as stack:
        total = cycles + rounds * round_cycles
        engines = [
            _EngineBench(size, total, Path(stack.enter_context(tempfile.TemporaryDirectory())))
            for size in sizes
        ]
        floor = _FloorBench(Path(stack.enter_context(tempfile.TemporaryDirectory())))
        benches: list[_Bench] = [*engines, floor]
        servers = []
        try:
            for bench in benches:
                servers.append(await _start(bench.work_dir, bench.app))
                await bench.create(servers[-1][1])
            pairs = list(zip(benches, servers, strict=True))
            # Round robin over the sizes and the floor: a noisy neighbour slows them all alike.
            for _ in range(cycles):
                for bench, (_, client) in pairs:
                    await bench.one_at_a_time(client)
            for _ in range(rounds):
                for bench, (process, client) in pairs:
                    await bench.in_flight(client, process.pid, round_cycles)
            return {
                "sizes": {
                    str(bench.parts): {
                        "parts": bench.parts,
                        "create_task_s": bench.create_seconds,
                        **bench.figures(cycles),
                        "peak_rss_mib": _peak_rss_mib(process.pid),
                    }
                    for bench, (process, _) in zip(engines, servers, strict=False)
                },
                "floor": floor.figures(cycles),
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
    """The figures for each task size and the floor, and the latency ratio largest/smallest."""
    results = asyncio.run(_measure(sizes, cycles, rounds, round_cycles))
    by_size = results["sizes"]
    smallest, largest = by_size[str(min(sizes))], by_size[str(max(sizes))]
    return {
        **results,
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
    floor = figures["floor"]
    print(
        f"{'floor':>8} {'':>13} {floor['sequential_cycles_per_s']:>14.0f}"
        f" {floor['cycle_latency_median_ms']:>10.2f} {floor['cycles_per_s']:>16.0f}"
        f" {floor['requestor_cpu_ms_per_cycle']:>13.2f}"
    )
    print(f"latency ratio largest/smallest: {figures['latency_ratio']:.2f}")


if __name__ == "__main__":
    main()
