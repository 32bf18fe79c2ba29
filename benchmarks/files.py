"""Benchmark 5: a 1 GiB result verified and merged, and the requestor's peak RSS.

The requestor runs as a node runs it (``python -m golem_apps.serve ...
requestor PORT``); the driver creates a one-part task, puts the result into
``subtask_outputs`` as a node does, and calls Verify, which runs the default
verify and the default merge (results into ``task_outputs``). The peak RSS
is the child's ``ru_maxrss`` from ``wait4``. The baseline is the same cycle
with a 1 KiB result: the difference is what the file's size costs.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from golem_apps import RequestorClient, VerifyResult

from ._harness import Comparison, Sample, compare
from .provider_cycle import ROOT, free_port

GIB = 1 << 30
CHUNK = 8 << 20


def write_result(path: Path, size: int) -> None:
    """A result file of ``size`` bytes of non-zero data (not sparse)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(min(CHUNK, size))
    with path.open("wb") as out:
        left = size
        while left > 0:
            out.write(block[: min(left, len(block))])
            left -= len(block)


async def _drive(port: int, work_dir: Path, size: int) -> float:
    async with await RequestorClient.connect(port=port, timeout=30) as client:
        await client.create_task("t", {"texts": ["a"]})
        assignment = await client.next_subtask("t", "s1")
        if assignment is None:
            raise RuntimeError("no subtask")
        result = work_dir / "t" / "subtask_outputs" / "s1" / "result.bin"
        await asyncio.to_thread(write_result, result, size)
        start = time.perf_counter()
        verdict = await client.verify("t", "s1")
        verify_seconds = time.perf_counter() - start
        if verdict.result != VerifyResult.SUCCESS:
            raise RuntimeError(f"verify answered {verdict}")
        merged = work_dir / "t" / "task_outputs" / "result.bin"
        if merged.stat().st_size != size:
            raise RuntimeError(f"merged result has {merged.stat().st_size} bytes, not {size}")
        await client.shutdown()
    return verify_seconds


def cycle(size: int) -> Sample:
    """One requestor process through a one-part task; its peak RSS and Verify time."""
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(tmp)
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "golem_apps.serve", "benchmarks.apps.trivial", "requestor",
             str(port), "--work-dir", str(work_dir)],
            cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            verify_seconds = asyncio.run(_drive(port, work_dir, size))
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"requestor exited with {proc.returncode}")
        return {"peak RSS MB": usage.ru_maxrss / 1024, "Verify s": verify_seconds}


def run(rounds: int = 2) -> dict[str, Comparison]:
    """The 1 GiB result (A) against a 1 KiB one (B)."""
    return compare(lambda: cycle(GIB), lambda: cycle(1024), rounds=rounds, warmup=0)


if __name__ == "__main__":
    for c in run().values():
        print(f"{c.metric}: 1 GiB {c.a.median:.3f} (max {c.a.max:.3f}), 1 KiB {c.b.median:.3f}")
