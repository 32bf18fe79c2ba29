"""How the task engine scales: CreateTask time, NextSubtask+Verify cycles, requestor memory.

Run ``python benchmarks/engine_scale.py``. For each task size it starts a
real requestor (``python -m golem_apps.serve benchmarks.engine_scale ...``)
on a fresh work dir, drives it over loopback with RequestorClient (the sizes'
cycles interleaved, so that load from elsewhere hits them alike) and prints:
CreateTask seconds, subtask cycles per second (NextSubtask, write the result,
Verify), the median NextSubtask+Verify latency, and the requestor's peak RSS
(after CreateTask and the cycles).
:func:`measure` returns the same figures as a dict.
"""

from __future__ import annotations

import argparse
import asyncio
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

from golem_apps import Part, Requestor, RequestorClient, TaskContext
from golem_apps.constants import SUBTASK_OUTPUTS_DIR

ROOT = Path(__file__).resolve().parent.parent
SIZES = (100, 10_000, 100_000)
CYCLES = 1000

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


class _Bench:
    """One task size: its own requestor, its tasks, its timings."""

    def __init__(self, parts: int, cycles: int, work_dir: Path) -> None:
        self.parts = parts
        self.cycles = cycles
        self.work_dir = work_dir
        # Each task stops before its last part (the one-off merge is not a
        # cycle); a size smaller than the cycles asked for gets more tasks.
        self.per_task = parts - 1
        self.latencies: list[float] = []
        self.cycle_seconds = 0.0
        self.create_seconds = 0.0

    async def create(self, client: RequestorClient) -> None:
        """CreateTask (timed: the first task), then any extra tasks."""
        started = time.perf_counter()
        await client.create_task("scale-0", {"parts": self.parts})
        self.create_seconds = time.perf_counter() - started
        for n in range(1, -(-self.cycles // self.per_task)):
            await client.create_task(f"scale-{n}", {"parts": self.parts})

    async def cycle(self, client: RequestorClient, k: int) -> None:
        """NextSubtask, the result file, Verify; only the two calls count as latency."""
        task_id = f"scale-{k // self.per_task}"
        subtask_id = f"sub-{k}"
        started = time.perf_counter()
        handed = await client.next_subtask(task_id, subtask_id, "node")
        spent = time.perf_counter() - started
        assert handed is not None
        folder = self.work_dir / task_id / SUBTASK_OUTPUTS_DIR / subtask_id
        folder.mkdir(parents=True)
        (folder / "result.txt").write_text(handed.params["frame"])
        before = time.perf_counter()
        await client.verify(task_id, subtask_id)
        self.latencies.append(spent + time.perf_counter() - before)
        self.cycle_seconds += time.perf_counter() - started


async def _measure(sizes: Sequence[int], cycles: int) -> dict[str, dict[str, float]]:
    with ExitStack() as stack:
        benches = [
            _Bench(size, cycles, Path(stack.enter_context(tempfile.TemporaryDirectory())))
            for size in sizes
        ]
        servers = []
        try:
            for bench in benches:
                servers.append(await _start(bench.work_dir))
                await bench.create(servers[-1][1])
            # Round robin over the sizes: a noisy neighbour slows them all alike.
            for k in range(cycles):
                for bench, (_, client) in zip(benches, servers, strict=True):
                    await bench.cycle(client, k)
            return {
                str(bench.parts): {
                    "parts": bench.parts,
                    "create_task_s": bench.create_seconds,
                    "cycles": cycles,
                    "cycles_per_s": cycles / bench.cycle_seconds,
                    "cycle_latency_median_ms": statistics.median(bench.latencies) * 1000,
                    "peak_rss_mib": _peak_rss_mib(process.pid),
                }
                for bench, (process, _) in zip(benches, servers, strict=True)
            }
        finally:
            for process, client in servers:
                client.close()
                process.kill()
                process.wait()
                if process.stdout is not None:
                    process.stdout.close()


def measure(sizes: Sequence[int] = SIZES, cycles: int = CYCLES) -> dict[str, Any]:
    """The figures for each task size, plus the latency ratio of the largest to the smallest."""
    results = asyncio.run(_measure(sizes, cycles))
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
    args = parser.parse_args(argv)
    figures = measure(args.sizes, args.cycles)
    header = ("parts", 8), ("CreateTask s", 13), ("cycles/s", 9), ("median ms", 10)
    print(" ".join(f"{name:>{width}}" for name, width in header), f"{'peak RSS MiB':>13}")
    for row in figures["sizes"].values():
        print(
            f"{row['parts']:>8} {row['create_task_s']:>13.3f} {row['cycles_per_s']:>9.0f}"
            f" {row['cycle_latency_median_ms']:>10.2f} {row['peak_rss_mib']:>13.1f}"
        )
    print(f"latency ratio largest/smallest: {figures['latency_ratio']:.2f}")


if __name__ == "__main__":
    main()
