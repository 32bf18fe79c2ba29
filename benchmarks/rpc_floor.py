"""The floor under benchmark 3's subtask cycle: two trivial RPCs and a file write.

A subtask cycle of ``engine_scale`` is NextSubtask, writing the result file,
then Verify, against a requestor process over loopback. Here the same driver
does RunBenchmark, the same file write, RunBenchmark, against a requestor
process of the trivial app: what a cycle costs with no engine work at all.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from golem_apps import RequestorClient

from .provider_cycle import ROOT


async def _cycles(work_dir: Path, cycles: int) -> float:
    command = [sys.executable, "-m", "golem_apps.serve", "benchmarks.apps.trivial", "requestor"]
    command += ["0", "--work-dir", str(work_dir)]
    popen = partial(subprocess.Popen, command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    process = await asyncio.to_thread(popen)
    try:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        port = int(line.rsplit(":", 1)[1])
        async with await RequestorClient.connect("127.0.0.1", port) as client:
            await client.run_benchmark()  # warm-up
            started = time.perf_counter()
            for k in range(cycles):
                await client.run_benchmark()
                folder = work_dir / "t" / "subtask_outputs" / f"sub-{k}"
                folder.mkdir(parents=True)
                (folder / "result.txt").write_text(f"frame-{k:06d}")
                await client.run_benchmark()
            return cycles / (time.perf_counter() - started)
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def measure(cycles: int = 1000) -> float:
    """Cycles per second of two trivial RPCs and a file write."""
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_cycles(Path(tmp), cycles))


if __name__ == "__main__":
    print(f"{measure():.0f} cycles/s")
