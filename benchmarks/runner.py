"""Benchmark 4: the local runner's efficiency against the spawn-bound limit.

A: ``golem_apps.runner.run_task`` on the trivial app, 100 subtasks, 4
providers. B, the limit, measured in the same run: 100 provider one-shot
cycles (``python -m golem_apps.serve ... provider``, spawn -> serving ->
Compute -> exit) four at a time, driven directly, with no requestor at all.
The limit's driver does not poll Health: it reads the line the provider
prints once it serves, so that it spends no CPU the providers could use.
Its children get a session of their own, as the runner's do: with Linux's
autogroup scheduling (on here), processes of one session share one CPU share
against the other sessions of this shared machine, and four providers in the
driver's session took twice as long as in sessions of their own.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from grpclib.client import Channel

from golem_apps.proto import golem_task_api as api

from ._harness import Comparison, Sample, compare
from .provider_cycle import CYCLE_TIMEOUT, ROOT, ensure_bytecode, free_port, golem_apps_command

SUBTASKS = 100
PROVIDERS = 4


async def _direct_cycle(work_dir: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *golem_apps_command(port, work_dir),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,  # as the runner's children: see the docstring
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), CYCLE_TIMEOUT)
        if not line.startswith(b"provider serving on"):
            raise RuntimeError(f"the provider said {line!r}")
        channel = Channel("127.0.0.1", port)
        try:
            reply = await api.ProviderAppStub(channel).compute(
                api.ComputeRequest(task_id="t", subtask_id=uuid.uuid4().hex),
                timeout=CYCLE_TIMEOUT,
            )
        finally:
            channel.close()
        code = await asyncio.wait_for(proc.wait(), CYCLE_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if code != 0 or not (work_dir / reply.output_filepath).is_file():
        raise RuntimeError(f"provider cycle failed (exit {code})")


async def _limit(work_dir: Path) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(SUBTASKS):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            await _direct_cycle(work_dir)

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
    from golem_apps.runner import PlainReporter, run_task

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


def run(rounds: int = 2, warmup: int = 1) -> dict[str, Comparison]:
    """The runner (A) against the spawn-bound limit (B), after ``warmup`` rounds of each.

    The warm-up takes the first run's one-off costs out of the figures (the
    runner's watchdog process, the app's first import in the runner), as the
    other benchmarks do.
    """
    ensure_bytecode()
    return compare(runner, limit, rounds=rounds, warmup=warmup)


if __name__ == "__main__":
    from ._harness import format_comparison

    print(format_comparison("runner", "runner", "limit", run(), "s", 1.0))
