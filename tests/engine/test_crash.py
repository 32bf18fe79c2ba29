"""SIGKILL a real requestor at many points of a task's life; restarted, it finishes the same.

Drivers play the node with :class:`golem_apps.RequestorClient` against
``python -m golem_apps.serve tests.apps.engine_app requestor 0``. When the
server dies under a call, they restart it on the same work dir and do what a
node can: CreateTask again (ALREADY_EXISTS is fine), Verify again (it must
answer a verdict: a retried Verify answers the stored one), and for a
NextSubtask whose reply was lost either nothing (the node never learned of
it: the engine hands the part out again as a backup copy) or the same call
again (it must answer the same assignment). ``GOLEM_APPS_ENGINE_FAULT`` makes
the server kill itself at an exact point (see ``golem_apps/engine/_faults.py``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

import anyio
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from golem_apps import RequestorClient, VerifyResult
from golem_apps.constants import SUBTASK_INPUTS_DIR, TASK_OUTPUTS_DIR
from golem_apps.engine._faults import FAULT_ENV

from ..conftest import ROOT
from .helpers import TASK, query, write_result

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

T = TypeVar("T")
NODE = "node-1"
PARTS = 12  # plus the app's "base" part, which every third part depends on
#: Runs of random kills with RPCs in flight; raise it for a longer check by hand.
CRASH_RUNS = int(os.environ.get("GOLEM_APPS_CRASH_RUNS", "6"))

#: What a node does about a NextSubtask whose reply it never got.
LostMode = Literal["forget", "retry"]


class Server:
    """One ``golem_apps.serve`` requestor subprocess at a time, on one work dir."""

    def __init__(self, python: str, work_dir: Path, fault: str = "") -> None:
        self.python = python
        self.work_dir = work_dir
        self.fault = fault  # GOLEM_APPS_ENGINE_FAULT of the first start only
        self.process: subprocess.Popen[str] | None = None
        self.starts = 0
        self.kills = 0
        self.serving = anyio.Event()  # set once a start answers, replaced at a kill

    async def start(self) -> RequestorClient:
        """Start the server and connect; retried until it answers."""
        while True:
            self.stop()
            self.starts += 1
            log = (self.work_dir.parent / f"serve-{self.starts}.log").open("w")
            command = [self.python, "-m", "golem_apps.serve", "tests.apps.engine_app"]
            command += ["requestor", "0", "--work-dir", str(self.work_dir)]
            env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
            if self.fault and self.starts == 1:
                env[FAULT_ENV] = self.fault
            popen = partial(
                subprocess.Popen,
                command,
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            self.process = await anyio.to_thread.run_sync(popen)
            log.close()
            assert self.process.stdout is not None
            line = await anyio.to_thread.run_sync(self.process.stdout.readline)
            if line.startswith("requestor serving on "):
                port = int(line.rsplit(":", 1)[1])
                try:
                    client = await RequestorClient.connect("127.0.0.1", port, timeout=10)
                    self.serving.set()
                    return client
                except Exception:  # killed while connecting: start again
                    if self.alive:
                        raise
            if self.alive:
                raise AssertionError(f"unexpected output of the server: {line!r}")

    @property
    def alive(self) -> bool:
        """True while the current process runs."""
        return self.process is not None and self.process.poll() is None

    async def died(self, process: subprocess.Popen[str] | None) -> bool:
        """True if ``process`` is dead or dies within a few seconds (a process that
        killed itself may still be exiting when its connection drops)."""
        if process is None:
            return True
        try:
            await anyio.to_thread.run_sync(partial(process.wait, timeout=5))
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the current process (its pipe is closed by the next start or stop)."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()  # a few milliseconds: dead before anyone checks
            self.kills += 1
            self.serving = anyio.Event()

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


@dataclass
class Fleet:
    """Plays the node: ``nodes`` providers, each one subtask at a time, all calling at once.

    A call that fails because the server died waits for the restart (the first
    to notice does it) and goes on as a node would.
    """

    server: Server
    client: RequestorClient
    parts: int = PARTS
    nodes: int = 1
    lost: LostMode = "forget"
    kill_steps: frozenset[int] = frozenset()
    step: int = 0
    subtasks: int = 0
    busy: int = 0
    generation: int = 0
    attempts: dict[str, int] = field(default_factory=dict)
    verified: set[str] = field(default_factory=set)
    lost_ids: list[str] = field(default_factory=list)
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    async def call(self, call: Awaitable[T]) -> T:
        # A deterministic kill point: before the call.
        self.step += 1
        if self.step in self.kill_steps:
            self.server.kill()
        return await call

    async def restart(self, generation: int) -> None:
        """Restart the dead server once per death, whoever notices first."""
        async with self.lock:
            if self.generation == generation:
                self.client.close()
                self.client = await self.server.start()
                self.generation += 1

    async def run(self) -> RequestorClient:
        """Drive the task to its end, restarting the server whenever it died; the last client."""
        while True:
            generation, process = self.generation, self.server.process
            try:
                create = self.client.create_task(TASK, {"parts": self.parts})
                await _tolerate(self.call(create), Status.ALREADY_EXISTS)
                break
            except Exception:
                # Restarted by another provider meanwhile, or dead: go on; else a real error.
                async with self.lock:  # a restart under way ends first
                    pass
                if self.generation == generation and not await self.server.died(process):
                    raise
                await self.restart(generation)
        async with anyio.create_task_group() as group:
            for node in range(self.nodes):
                group.start_soon(self.node, f"node-{node}")
        return self.client

    async def node(self, node_id: str) -> None:
        to_verify: str | None = None
        retry: str | None = None
        while True:
            # The process this call talks to (another provider may restart the server
            # while this call fails on the dead one's connection).
            generation, process = self.generation, self.server.process
            client = self.client
            subtask_id = None
            try:
                if to_verify is not None:
                    verdict = await self.call(client.verify(TASK, to_verify))
                    if verdict.result is VerifyResult.SUCCESS:
                        self.verified.add(to_verify.split("/")[0])
                    to_verify = None
                    self.busy -= 1
                fresh = retry is None
                if retry is not None:
                    subtask_id, retry = retry, None
                else:
                    if not await self.call(client.has_pending_subtasks(TASK)):
                        if self.busy == 0:
                            return  # nobody holds anything and nothing is pending: the end
                        await anyio.sleep(0.01)
                        continue
                    self.subtasks += 1
                    subtask_id = f"SUB{self.subtasks}"
                    self.busy += 1
                handed = await self.call(client.next_subtask(TASK, subtask_id, node_id))
                if handed is None:
                    self.busy -= 1
                    await anyio.sleep(0.01)
                    continue
                text = handed.params["text"]
                # (A retried hand-out answers what it did, even if a backup won since.)
                assert not fresh or text not in self.verified, f"{text} handed out after success"
                attempt = self.attempts[text] = self.attempts.get(text, 0) + 1
                bad = attempt == 1 and text[-1:] in "15"  # some first attempts fail verification
                compute(self.server.work_dir, subtask_id, text, handed.resources, bad)
                to_verify = subtask_id
            except Exception:
                # Restarted by another provider meanwhile, or dead: go on; else a real error.
                async with self.lock:  # a restart under way ends first
                    pass
                if self.generation == generation and not await self.server.died(process):
                    raise
                if subtask_id is not None and to_verify is None:
                    # The NextSubtask died under us: its reply never came.
                    if self.lost == "retry":
                        retry = subtask_id
                    else:
                        self.lost_ids.append(subtask_id)
                        self.busy -= 1
                await self.restart(generation)


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
    lost_ids: list[str]


async def drive(
    python: str,
    work_dir: Path,
    *,
    kill_steps: frozenset[int] = frozenset(),
    kill_after: tuple[float, ...] = (),
    parts: int = PARTS,
    nodes: int = 1,
    lost: LostMode = "forget",
    fault: str = "",
) -> Run:
    """Run one task to its end, killing the server at the given steps and times."""
    await anyio.Path(work_dir).mkdir(parents=True)
    server = Server(python, work_dir, fault)
    try:
        fleet = Fleet(server, await server.start(), parts, nodes, lost, kill_steps)
        started = time.monotonic()
        finished = anyio.Event()

        async def killer() -> None:
            # Random kills: each delay counts from the moment the server serves again.
            for delay in kill_after:
                await server.serving.wait()
                with anyio.move_on_after(delay):
                    await finished.wait()
                if finished.is_set():
                    return
                server.kill()

        async with anyio.create_task_group() as group:
            group.start_soon(killer)
            try:
                with anyio.fail_after(120):
                    client = await fleet.run()
                client.close()
            finally:
                finished.set()
                group.cancel_scope.cancel()  # the killer may wait for a start that never comes
        # Nothing left dangling, every part succeeded exactly once, the task is finished.
        live = "SELECT count(*) FROM subtasks WHERE state IN ('computing', 'standby')"
        assert query(work_dir, live) == [(0,)]
        wins = query(
            work_dir, "SELECT part, count(*) FROM subtasks WHERE state = 'success' GROUP BY part"
        )
        assert wins == [(part, 1) for part in range(parts + 1)]
        assert query(work_dir, "SELECT state FROM tasks") == [("finished",)]
        return Run(outputs(work_dir), server.kills, time.monotonic() - started, fleet.lost_ids)
    finally:
        server.stop()


@pytest.fixture
async def reference(python: str, tmp_path: Path) -> Run:
    """An uninterrupted run's outputs."""
    run = await drive(python, tmp_path / "reference")
    # 13 parts, each in task_outputs under its part name; the dependents carry base's result.
    assert len(run.outputs) == PARTS + 1
    assert run.outputs["p0-result.txt"] == b"T0+BASE"
    assert run.outputs["p1-result.txt"] == b"T1"
    return run


async def test_sigkill_between_calls_leaves_the_same_outputs(
    python: str, tmp_path: Path, reference: Run
) -> None:
    # Kill points between calls: after CreateTask, between NextSubtask and
    # Verify, around the first success, before the last calls.
    steps = frozenset({2, 3, 5, 6, 8, 20, 40, 55})
    for lost in ("forget", "retry"):
        points = await drive(python, tmp_path / lost, kill_steps=steps, lost=lost)
        assert points.outputs == reference.outputs
        assert points.kills >= 5


@pytest.mark.parametrize("lost", ["forget", "retry"])
async def test_a_hand_out_lost_after_its_commit_is_recovered(
    python: str, tmp_path: Path, reference: Run, lost: LostMode
) -> None:
    # The server dies after committing the 2nd hand-out (p0's), before writing its reply.
    run = await drive(python, tmp_path / "work", fault="handed_out:2", lost=lost)
    assert run.outputs == reference.outputs
    work_dir = tmp_path / "work"
    lost_id = "SUB2"
    if lost == "forget":
        # The node never learned of SUB2: once nothing else was pending, its part went
        # to a backup copy, which won; SUB2 is not used.
        assert run.lost_ids == [lost_id]
        assert query(work_dir, "SELECT state FROM subtasks WHERE id = ?", lost_id) == [
            ("superseded",)
        ]
        backups = query(work_dir, "SELECT id, state FROM subtasks WHERE copy_of = ?", lost_id)
        [(issued,)] = query(work_dir, "SELECT count(*) FROM subtasks")
        assert backups == [(f"SUB{issued}", "success")]  # handed out last
    else:
        # The same NextSubtask again: the same assignment, no backup copy needed.
        assert query(work_dir, "SELECT state FROM subtasks WHERE id = ?", lost_id) == [("success",)]
        assert query(work_dir, "SELECT count(*) FROM subtasks WHERE copy_of IS NOT NULL") == [(0,)]


@pytest.mark.parametrize("point", ["merge_start", "merge_end"])
async def test_a_verify_killed_in_its_merge_answers_success_when_retried(
    python: str, tmp_path: Path, reference: Run, point: str
) -> None:
    # The last Verify dies in the merge (before it, or after it is recorded); the
    # retried Verify answers SUCCESS with the outputs in place.
    run = await drive(python, tmp_path / "work", fault=f"{point}:1")
    assert run.outputs == reference.outputs
    # Every Verify answered a verdict (Fleet raises on any error): the retry included.
    assert query(tmp_path / "work", "SELECT count(*) FROM subtasks WHERE state = 'success'") == [
        (PARTS + 1,)
    ]


async def test_random_sigkills_with_rpcs_in_flight_leave_the_same_outputs(
    python: str, tmp_path: Path
) -> None:
    # Three providers calling at once; kills at random moments (mid-call, mid-merge,
    # mid-commit...). GOLEM_APPS_CRASH_RUNS sets the number of runs.
    parts = 4 * PARTS
    reference = await drive(python, tmp_path / "reference", parts=parts, nodes=3)
    rng = random.Random(20261201)
    kills = 0
    for run in range(CRASH_RUNS):
        # Each delay counts from the moment the server serves again.
        delays = tuple(rng.uniform(0.0, reference.seconds / 2) for _ in range(4))
        lost: LostMode = "retry" if run % 2 else "forget"
        result = await drive(
            python, tmp_path / f"run-{run}", kill_after=delays, parts=parts, nodes=3, lost=lost
        )
        assert result.outputs == reference.outputs, f"run {run}, kills after {delays}"
        kills += result.kills
    print(f"{CRASH_RUNS} runs, {kills} kills")
    assert kills >= CRASH_RUNS  # most random kills land before the task ends


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
