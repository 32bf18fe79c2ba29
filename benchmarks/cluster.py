"""Benchmark 6: the runner's providers on a Dask cluster (``--cluster``).

A: ``run_task`` of the trivial app's 100-part task on a Dask cluster of 2
workers on this machine; B, in the same run, interleaved: the local runner
with 2 providers. Two forms of A: ``cluster="local:2"`` (the runner starts a
LocalCluster, timed with it) and a running cluster (``dask scheduler`` and
two ``dask worker --nthreads 1`` processes, started once, outside the
timing). The cluster's processes get sessions of their own, as the runner's
children do (see benchmark 4).

Then a 1 GiB result (``benchmarks/apps/big.py``) through the running form,
against a 1 KiB one: the peak RSS of the runner (``python -m
golem_apps.run``) and of the workers (fresh ones for each run), each
process's own high-water mark (``VmHWM`` in ``/proc/PID/status``, Linux),
without its children (the requestor, the providers).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._harness import Comparison, Sample, compare
from .provider_cycle import ROOT, ensure_bytecode

SUBTASKS = 100
WORKERS = 2
GIB = 1 << 30
DASK = Path(sys.executable).parent / "dask"
#: Safety bound on a cluster process's start (not a measurement).
START_LIMIT = 60.0


def peak_rss(pid: int) -> int:
    """The process's own peak RSS so far (its children apart), in bytes: 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def _wait_for(log: Path, pattern: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + START_LIMIT
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    raise TimeoutError(f"{process.args!r} did not start")


class Cluster:
    """``dask scheduler`` and ``dask worker`` processes on loopback."""

    def __init__(self, folder: Path, workers: int) -> None:
        self.folder = folder
        self.scheduler = self._start(["scheduler", "--port", "0"], "scheduler")
        self.address = _wait_for(folder / "scheduler.log", r"Scheduler at:\s+(\S+)", self.scheduler)
        self.workers = [self._start_worker(i) for i in range(workers)]

    def _start(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        with (self.folder / f"{name}.log").open("wb") as log:
            return subprocess.Popen(
                [str(DASK), *args, "--host", "127.0.0.1", "--no-dashboard"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=ROOT,
                start_new_session=True,
            )  # fmt: skip

    def _start_worker(self, index: int) -> subprocess.Popen[bytes]:
        name = f"worker{index}"
        process = self._start(
            ["worker", self.address, "--nworkers", "1", "--nthreads", "1", "--no-nanny",
             "--local-directory", str(self.folder / name)],
            name,
        )  # fmt: skip
        _wait_for(self.folder / f"{name}.log", r"(Registered to:)", process)
        return process

    def peak_rss(self) -> list[int]:
        """The peak RSS of each worker so far, in bytes."""
        return [peak_rss(worker.pid) for worker in self.workers]

    def close(self) -> None:
        """Stop everything."""
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                process.terminate()
                process.wait(30)


@contextmanager
def cluster(workers: int = WORKERS) -> Iterator[Cluster]:
    """A running cluster for the block."""
    with tempfile.TemporaryDirectory() as tmp:
        started = Cluster(Path(tmp), workers)
        try:
            yield started
        finally:
            started.close()


def _run(**options: object) -> Sample:
    from golem_apps.runner import PlainReporter, run_task

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = asyncio.run(
            run_task(
                "benchmarks.apps.trivial",
                params={"texts": [f"t{i}" for i in range(SUBTASKS)]},
                work_dir=Path(tmp) / "work",
                out=Path(tmp) / "out",
                reporter=PlainReporter(io.StringIO()),
                **options,  # type: ignore[arg-type]
            )
        )
        wall = time.perf_counter() - start
    if len(result.output_files) != SUBTASKS or result.failures:
        raise RuntimeError(f"{len(result.output_files)} outputs, {len(result.failures)} failures")
    return {"wall": wall}


def overhead(rounds: int) -> dict[str, dict[str, Comparison]]:
    """100 subtasks on 2 Dask workers (both forms) against the local runner with 2 providers."""
    ensure_bytecode()
    local = lambda: _run(providers=WORKERS)  # noqa: E731
    figures = {"local:2": compare(lambda: _run(cluster=f"local:{WORKERS}"), local, rounds=rounds)}
    with cluster() as running:
        figures["running"] = compare(lambda: _run(cluster=running.address), local, rounds=rounds)
    return figures


def _big_run(size: int) -> Sample:
    """One task with a ``size``-byte result on fresh workers: the runner's and workers' peak RSS."""
    with tempfile.TemporaryDirectory() as tmp, cluster() as running:
        command = [
            sys.executable, "-m", "golem_apps.run", "benchmarks.apps.big",
            "--cluster", running.address, "--params", json.dumps({"size": size}),
            "--work-dir", str(Path(tmp) / "work"),
        ]  # fmt: skip
        start = time.perf_counter()
        errors = Path(tmp) / "stderr"
        with errors.open("wb") as stderr:
            runner = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
        runner_peak = 0
        while runner.poll() is None:  # the high-water mark only grows: the last reading counts
            runner_peak = max(runner_peak, peak_rss(runner.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - start
        if runner.returncode != 0:
            raise RuntimeError(f"the run failed: {errors.read_text(errors='replace')}")
        merged = next((Path(tmp) / "work" / "requestor").glob("*/task_outputs/result.bin"))
        if merged.stat().st_size != size:
            raise RuntimeError(f"the result has {merged.stat().st_size} bytes, not {size}")
        workers = running.peak_rss()
    return {
        "runner peak RSS MB": runner_peak / 1e6,
        "worker peak RSS MB": max(workers) / 1e6,
        "wall s": wall,
    }


def big_result(rounds: int) -> dict[str, Comparison]:
    """A 1 GiB result against a 1 KiB one."""
    return compare(lambda: _big_run(GIB), lambda: _big_run(1024), rounds=rounds, warmup=0)


if __name__ == "__main__":
    from ._harness import format_comparison

    for form, figures in overhead(rounds=2).items():
        print(format_comparison(f"cluster {form}", "dask", "local", figures, "s", 1.0))
    print(format_comparison("1 GiB result", "1 GiB", "1 KiB", big_result(1), "", 1.0))
