"""Soak: one requestor process, 20 tasks x 200 parts driven at once over loopback.

Every task completes, and the server's file descriptors and memory stay roughly
flat between the first and the last quarter of the run, and its descriptors are
back where they were once every task is merged.

A task's merge (the Verify of its last part) copies its results into
task_outputs in a worker thread, holding a source and a target file open while
it runs: two descriptors per task being merged, legitimately, none left after.
The 20 tasks run in step, so their merges overlap at the very end of the run,
and on a busy machine (slow copies) they can fill most of the last quarter:
its median then counted those copies (20-30 descriptors), not a leak. So the
last quarter's samples are those taken while no merge runs, and a leak in the
merges themselves is caught by the count once they all ended.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

import anyio
import psutil
import pytest

from golem_apps import RequestorClient, VerifyResult
from golem_apps.constants import SUBTASK_OUTPUTS_DIR, TASK_OUTPUTS_DIR

from ..conftest import ROOT

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TASKS = 20
PARTS = 200
#: Bound on the whole run, far above what it takes (it proves termination).
RUN_WITHIN = 240
#: Leak bounds between the first and the last quarter's medians.
MAX_FD_GROWTH = 8
MAX_RSS_GROWTH = 40 * 1024 * 1024


async def test_soak(python: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
        [python, "-m", "golem_apps.serve", "tests.hardening.apps", "requestor", "0",
         "--work-dir", str(work)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await anyio.to_thread.run_sync(proc.stdout.readline)
        port = int(line.strip().rsplit(":", 1)[1])
        server = psutil.Process(proc.pid)
        samples: list[tuple[int, int, int, int]] = []  # (done, merging, fds, rss)
        done = 0
        merging = 0  # tasks whose last Verify (the merge) is running
        start = time.monotonic()

        async def drive(client: RequestorClient, task_id: str) -> None:
            nonlocal done, merging
            await client.create_task(task_id, {"n": PARTS})
            index = 0
            while await client.has_pending_subtasks(task_id):
                subtask_id = f"{task_id}-{index}"
                index += 1
                assignment = await client.next_subtask(task_id, subtask_id, node_id="soak")
                assert assignment is not None
                folder = work / task_id / SUBTASK_OUTPUTS_DIR / subtask_id
                folder.mkdir(parents=True)
                (folder / f"part{assignment.params['index']}.txt").write_text(subtask_id)
                last_part = index == PARTS  # its Verify merges the task
                merging += last_part
                try:
                    verdict = await client.verify(task_id, subtask_id)
                finally:
                    merging -= last_part
                assert verdict.result is VerifyResult.SUCCESS, verdict
                done += 1
            assert index == PARTS

        async def sample() -> None:
            while True:
                # No await in between: ``merging`` holds for the whole sample.
                samples.append((done, merging, server.num_fds(), server.memory_info().rss))
                await anyio.sleep(0.2)

        with anyio.fail_after(RUN_WITHIN):
            clients = [
                await RequestorClient.connect("127.0.0.1", port, timeout=15) for _ in range(4)
            ]
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(sample)
                    async with anyio.create_task_group() as drivers:
                        for number in range(TASKS):
                            drivers.start_soon(drive, clients[number % 4], f"task{number}")
                    group.cancel_scope.cancel()
            finally:
                for client in clients:
                    client.close()
        took = time.monotonic() - start
        fds_after = server.num_fds()  # every merge ended (the last Verifies answered)
        for number in range(TASKS):
            outputs = list((work / f"task{number}" / TASK_OUTPUTS_DIR).iterdir())
            assert len(outputs) == PARTS, (number, len(outputs))
        total = TASKS * PARTS
        first = [s for s in samples if s[0] <= total // 4 and not s[1]]
        last = [s for s in samples if s[0] >= total * 3 // 4 and not s[1]]
        assert len(first) >= 3 and len(last) >= 3, (len(first), len(last))
        fds = statistics.median(s[2] for s in first), statistics.median(s[2] for s in last)
        rss = statistics.median(s[3] for s in first), statistics.median(s[3] for s in last)
        print(f"{total} subtasks in {took:.1f} s; fds {fds}, {fds_after} after; rss MiB "
              f"{rss[0] / 2**20:.1f} -> {rss[1] / 2**20:.1f}")  # fmt: skip
        assert fds[1] <= fds[0] + MAX_FD_GROWTH, fds
        assert fds_after <= fds[0] + MAX_FD_GROWTH, (fds, fds_after)
        assert rss[1] <= rss[0] + MAX_RSS_GROWTH, rss
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stdout is not None:
            proc.stdout.close()
