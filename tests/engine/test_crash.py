"""SIGKILL a real requestor at many points of a task's life; restarted, it finishes the same.

A driver plays the node with :class:`golem_apps.RequestorClient` against
``python -m golem_apps.serve tests.apps.engine_app requestor 0``. When the
server dies under a call, it restarts it on the same work dir and does what a
node can: CreateTask again (ALREADY_EXISTS is fine), AbortSubtask a hand-out
whose reply was lost, Verify again (FAILED_PRECONDITION: recorded already).
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from golem_apps import RequestorClient, VerifyResult
from golem_apps.constants import SUBTASK_INPUTS_DIR, TASK_OUTPUTS_DIR

from ..conftest import ROOT
from .helpers import TASK, query, write_result

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

T = TypeVar("T")
NODE = "node-1"
PARTS = 12  # plus the app's "base" part, which every third part depends on


class Server:
    """One ``golem_apps.serve`` requestor subprocess at a time, on one work dir."""

    def __init__(self, python: str, work_dir: Path) -> None:
        self.python = python
        self.work_dir = work_dir
        self.process: subprocess.Popen[str] | None = None
        self.starts = 0
        self.kills = 0

    async def start(self) -> RequestorClient:
        """Start the server and connect; retried until it answers."""
        while True:
            self.stop()
            self.starts += 1
            log = (self.work_dir.parent / f"serve-{self.starts}.log").open("w")
            command = [self.python, "-m", "golem_apps.serve", "tests.apps.engine_app"]
            command += ["requestor", "0", "--work-dir", str(self.work_dir)]
            popen = partial(
                subprocess.Popen, command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True
            )
            self.process = await anyio.to_thread.run_sync(popen)
            log.close()
            assert self.process.stdout is not None
            line = await anyio.to_thread.run_sync(self.process.stdout.readline)
            if line.startswith("requestor serving on "):
                port = int(line.rsplit(":", 1)[1])
                try:
                    return await RequestorClient.connect("127.0.0.1", port, timeout=10)
                except (OSError, TimeoutError):
                    if self.alive:
                        raise
            if self.alive:
                raise AssertionError(f"unexpected output of the server: {line!r}")

    @property
    def alive(self) -> bool:
        """True while the current process runs."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the current process (its pipe is closed by the next start or stop)."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()  # a few milliseconds: dead before anyone checks
            self.kills += 1

    def stop(self) -> None:
        """Kill and reap the process."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()


def compute(work_dir: Path, subtask_id: str, text: str, resources: list[str], bad: bool) -> None:
    """The provider's work, done in place: upper-cased text plus the resources' contents."""
    inputs = work_dir / TASK / SUBTASK_INPUTS_DIR
    shipped = "".join(f"+{(inputs / name).read_text()}" for name in resources)
    write_result(work_dir, subtask_id, ("bad " if bad else "") + text.upper() + shipped)


class Driver:
    """Plays the node: one provider, one subtask at a time, recovering from crashes."""

    def __init__(self, server: Server, kill_steps: frozenset[int] = frozenset()) -> None:
        self.server = server
        self.work_dir = server.work_dir
        self.kill_steps = kill_steps
        self.step = 0
        self.subtasks = 0
        self.attempts: dict[str, int] = {}
        self.verified: set[str] = set()

    async def rpc_step(self) -> None:
        # A deterministic kill point: between two calls.
        self.step += 1
        if self.step in self.kill_steps:
            self.server.kill()

    async def run(self, client: RequestorClient) -> RequestorClient:
        """Drive the task to its end, restarting the server whenever it died; the last client."""
        created = False
        lost_handout: str | None = None
        to_verify: str | None = None
        while True:
            try:
                if not created:
                    await self.rpc_step()
                    create = client.create_task(TASK, {"parts": PARTS})
                    await _tolerate(create, Status.ALREADY_EXISTS)
                    created = True
                if lost_handout is not None:
                    await self.rpc_step()
                    abort = client.abort_subtask(TASK, lost_handout)
                    await _tolerate(abort, Status.NOT_FOUND, Status.FAILED_PRECONDITION)
                    lost_handout = None
                if to_verify is not None:
                    await self.rpc_step()
                    text = to_verify.split("/")[0]
                    verdict = await _tolerate(
                        client.verify(TASK, to_verify), Status.FAILED_PRECONDITION
                    )
                    if verdict is not None and verdict.result is VerifyResult.SUCCESS:
                        self.verified.add(text)
                    to_verify = None
                await self.rpc_step()
                if not await client.has_pending_subtasks(TASK):
                    return client
                self.subtasks += 1
                lost_handout = subtask_id = f"SUB{self.subtasks}"
                await self.rpc_step()
                handed = await client.next_subtask(TASK, subtask_id, NODE)
                lost_handout = None
                assert handed is not None, "HasPendingSubtasks said yes, nothing is live"
                text = handed.params["text"]
                assert text not in self.verified, f"part {text} handed out after its success"
                attempt = self.attempts[text] = self.attempts.get(text, 0) + 1
                bad = attempt == 1 and text[-1:] in "15"  # some first attempts fail verification
                compute(self.work_dir, subtask_id, text, handed.resources, bad)
                to_verify = subtask_id
            except Exception:
                if self.server.alive:
                    raise
                client.close()
                client = await self.server.start()


async def _tolerate(call: Awaitable[T], *statuses: Status) -> T | None:
    try:
        return await call
    except GRPCError as error:
        if error.status not in statuses:
            raise
        return None


def outputs(work_dir: Path) -> dict[str, bytes]:
    folder = work_dir / TASK / TASK_OUTPUTS_DIR
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@dataclass(frozen=True)
class Run:
    """One task driven to its end."""

    outputs: dict[str, bytes]
    kills: int
    seconds: float  # from the first connection to the end


async def drive(
    python: str, work_dir: Path, kill_steps: frozenset[int], kill_after: list[float]
) -> Run:
    """Run one task to its end, killing the server at the given steps and times."""
    await anyio.Path(work_dir).mkdir(parents=True)
    server = Server(python, work_dir)
    driver = Driver(server, kill_steps)
    try:
        client = await server.start()
        started = time.monotonic()
        finished = anyio.Event()

        async def killer() -> None:
            # Random kills: each delay counts from the moment the previous one fired.
            for delay in kill_after:
                with anyio.move_on_after(delay):
                    await finished.wait()
                if finished.is_set():
                    return
                server.kill()

        async with anyio.create_task_group() as group:
            group.start_soon(killer)
            try:
                with anyio.fail_after(120):
                    client = await driver.run(client)
                client.close()
            finally:
                finished.set()
        # Nothing left dangling, every part succeeded exactly once, the task is finished.
        assert query(work_dir, "SELECT count(*) FROM subtasks WHERE state = 'computing'") == [(0,)]
        wins = query(
            work_dir, "SELECT part, count(*) FROM subtasks WHERE state = 'success' GROUP BY part"
        )
        assert wins == [(part, 1) for part in range(PARTS + 1)]
        assert query(work_dir, "SELECT state FROM tasks") == [("finished",)]
        return Run(outputs(work_dir), server.kills, time.monotonic() - started)
    finally:
        server.stop()


async def test_sigkill_at_any_point_leaves_the_same_outputs(python: str, tmp_path: Path) -> None:
    reference = await drive(python, tmp_path / "reference", frozenset(), [])
    # 13 parts, each in task_outputs under its part name; the dependents carry base's result.
    assert len(reference.outputs) == PARTS + 1
    assert reference.outputs["p0-result.txt"] == b"T0+BASE"
    assert reference.outputs["p1-result.txt"] == b"T1"

    # Kill points between calls: after CreateTask, between NextSubtask and
    # Verify, around the first success, before the last calls.
    points = await drive(python, tmp_path / "points", frozenset({2, 3, 5, 6, 8, 20, 40, 55}), [])
    assert points.outputs == reference.outputs
    assert points.kills >= 5

    # Random kills, mid-call included (a merge, a commit, a file copy...).
    rng = random.Random(20261127)
    kills = 0
    for run in range(6):
        delays = [rng.uniform(0.0, reference.seconds / 2) for _ in range(3)]
        result = await drive(python, tmp_path / f"random-{run}", frozenset(), delays)
        assert result.outputs == reference.outputs, f"run {run}, kills after {delays}"
        kills += result.kills
    assert kills >= 10  # most random kills land before the task ends


async def _create_big(client: RequestorClient, server: Server) -> None:
    try:
        await client.create_task(TASK, {"parts": 20_000})
    except Exception:
        assert not server.alive  # killed under the call


async def test_sigkill_during_create_task(python: str, tmp_path: Path) -> None:
    rng = random.Random(7)
    interrupted = 0
    for run in range(3):
        work_dir = tmp_path / f"run-{run}"
        await anyio.Path(work_dir).mkdir()
        server = Server(python, work_dir)
        try:
            client = await server.start()
            async with anyio.create_task_group() as group:
                group.start_soon(_create_big, client, server)
                # Kill once some batches are in, at a random moment after that.
                with anyio.fail_after(30):
                    # Polling: the other process's database has no event to wait on.
                    while not query(work_dir, "SELECT 1 FROM tasks WHERE total > 0"):
                        await anyio.sleep(0.005)
                await anyio.sleep(rng.uniform(0, 0.05))
                server.kill()
            client.close()
            interrupted += query(work_dir, "SELECT state FROM tasks") == [("creating",)]
            client = await server.start()
            await _tolerate(client.create_task(TASK, {"parts": 20_000}), Status.ALREADY_EXISTS)
            # Either way the task now has all its parts, once each.
            assert query(work_dir, "SELECT state, total FROM tasks") == [("active", 20_001)]
            assert query(work_dir, "SELECT count(*) FROM parts") == [(20_001,)]
            assert await client.has_pending_subtasks(TASK)
            client.close()
        finally:
            server.stop()
    assert interrupted >= 2
