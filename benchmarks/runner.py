"""Benchmark 4: the local runner's efficiency against the spawn-bound limit.

A: ``golem_apps.runner.run_task`` on the trivial app, 100 subtasks, 4
providers. B, the limit, measured in the same run: 100 provider one-shot
cycles (``python -m golem_apps.serve ... provider``, spawn -> SERVING ->
Compute -> exit) four at a time, driven directly, with no requestor at all.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from pathlib import Path

from ._harness import Comparison, Sample, compare
from .provider_cycle import cycle, ensure_bytecode, free_port, golem_apps_command

SUBTASKS = 100
PROVIDERS = 4


async def _limit(work_dir: Path) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(SUBTASKS):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            port = free_port()
            await cycle(golem_apps_command(port, work_dir), port, work_dir)

    await asyncio.gather(*(worker() for _ in range(PROVIDERS)))


def limit() -> Sample:
    """Wall time of 100 direct provider cycles, 4 at a time."""
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(tmp)
        (work_dir / "subtask_inputs").mkdir()
        start = time.perf_counter()
        asyncio.run(_limit(work_dir))
        return {"wall": time.perf_counter() - start}


def runner() -> Sample:
    """Wall time of the runner computing a 100-part task with 4 providers."""
    from golem_apps.runner import PlainReporter, run_task  # type: ignore[import-not-found, unused-ignore]

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = asyncio.run(
            run_task(
                "benchmarks.apps.trivial",
                params={"texts": [f"t{i}" for i in range(SUBTASKS)]},
                providers=PROVIDERS,
                work_dir=Path(tmp) / "work",
                out=Path(tmp) / "out",
                reporter=PlainReporter(io.StringIO()),
            )
        )
        wall = time.perf_counter() - start
        if len(result.output_files) != SUBTASKS:
            raise RuntimeError(f"the runner produced {len(result.output_files)} files")
        return {"wall": wall}


def run(rounds: int = 2) -> dict[str, Comparison]:
    """The runner (A) against the spawn-bound limit (B)."""
    ensure_bytecode()
    return compare(runner, limit, rounds=rounds, warmup=0)


if __name__ == "__main__":
    from ._harness import format_comparison

    print(format_comparison("runner", "runner", "limit", run(), "s", 1.0))
