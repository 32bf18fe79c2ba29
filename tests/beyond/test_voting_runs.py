"""Redundancy and bans end to end: a cheating provider through the runner, a killed requestor."""

from __future__ import annotations

import signal
import subprocess
from functools import partial
from pathlib import Path

import anyio
import pytest

from golem_apps import RequestorClient, VerifyResult, read_task_status
from golem_apps.constants import SUBTASK_OUTPUTS_DIR, TASK_OUTPUTS_DIR
from golem_apps.runner import Reporter, run_task

from ..conftest import ROOT

pytestmark = pytest.mark.anyio

R = VerifyResult


def sum_of_squares(n: int) -> int:
    return sum(k * k for k in range(n))


class NodeEvents(Reporter):
    """Keeps the runner's node events."""

    def __init__(self) -> None:
        self.nodes: list[tuple[str, str, str]] = []

    def node_event(self, kind: str, node_id: str, detail: str = "") -> None:
        self.nodes.append((kind, node_id, detail))


async def test_a_cheating_provider_is_outvoted_and_banned(tmp_path: Path) -> None:
    events = NodeEvents()
    result = await run_task(
        "examples.voting",
        params={"parts": 6, "n": 6000, "cheat_slot": 1},
        providers=4,
        in_process=True,
        work_dir=tmp_path / "work",
        reporter=events,
    )
    # The output is right: every part's majority was honest.
    assert (result.outputs_dir / "total.txt").read_text() == f"{sum_of_squares(6000)}\n"
    status = result.status
    assert status is not None and status.redundancy == 3 and status.state == "finished"
    assert status.parts["done"] == result.parts == 6
    # Every failure is the cheater's (one node: the first machine of slot 1),
    # outvoted, or voided once it was banned.
    assert result.failures
    cheaters = {failure.node_id for failure in result.failures}
    assert len(cheaters) == 1 and next(iter(cheaters)).startswith("provider1-")
    for failure in result.failures:
        assert "outvoted" in failure.reason or "voided" in failure.reason, failure
    for node, info in status.nodes.items():
        if node not in cheaters:
            assert info.failures == 0 and info.banned is None, node
            assert set(info.subtasks) <= {"success", "superseded"}, (node, info)
    # Banned after two failures, which voided its results still waiting for a vote.
    assert set(status.bans) == cheaters
    for node, reason in status.bans.items():
        assert "2 failed verifications" in reason
        assert status.nodes[node].failures == 2
    # The runner saw the ban and replaced the machine.
    banned = {node for kind, node, _ in events.nodes if kind == "banned"}
    assert banned and banned <= set(status.bans)


async def test_a_banned_provider_is_replaced_by_another_machine(tmp_path: Path) -> None:
    # Three providers for three copies of each part: once slot 1's node is
    # banned, only a new machine in that slot lets the parts find three nodes.
    events = NodeEvents()
    result = await run_task(
        "examples.voting",
        params={"parts": 5, "n": 5000, "cheat_slot": 1},
        providers=3,
        in_process=True,
        work_dir=tmp_path / "work",
        reporter=events,
    )
    assert (result.outputs_dir / "total.txt").read_text() == f"{sum_of_squares(5000)}\n"
    assert result.status is not None
    replaced = [node for kind, node, _ in events.nodes if kind == "replaced"]
    status = result.status
    assert replaced and set(replaced) == set(status.bans)
    assert len(status.bans) == 1  # one cheating node: its replacement is honest
    in_slot = {node for node in status.nodes if node.startswith("provider1-")}
    assert len(in_slot) >= 2  # the banned node, then its replacement
    for node in in_slot - set(status.bans):
        assert status.nodes[node].failures == 0 and status.nodes[node].banned is None


class Server:
    """A ``golem_apps.serve examples.voting requestor`` subprocess that a test can SIGKILL."""

    def __init__(self, python: str, work_dir: Path) -> None:
        self.python = python
        self.work_dir = work_dir
        self.process: subprocess.Popen[str] | None = None
        self.client: RequestorClient | None = None

    async def start(self) -> RequestorClient:
        command = [self.python, "-m", "golem_apps.serve", "examples.voting", "requestor", "0"]
        command += ["--work-dir", str(self.work_dir)]
        popen = partial(
            subprocess.Popen,
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.process = await anyio.to_thread.run_sync(popen)
        assert self.process.stdout is not None
        line = await anyio.to_thread.run_sync(self.process.stdout.readline)
        assert line.startswith("requestor serving on "), line
        self.client = await RequestorClient.connect(
            "127.0.0.1", int(line.rsplit(":", 1)[1]), timeout=10
        )
        return self.client

    async def restart(self) -> RequestorClient:
        """SIGKILL (no Shutdown, no cleanup), then start anew on the same work dir."""
        self.stop()
        return await self.start()

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            assert self.process.stdout is not None
            self.process.stdout.close()
            self.process = None


def put_result(work_dir: Path, task_id: str, subtask_id: str, text: str) -> None:
    folder = work_dir / task_id / SUBTASK_OUTPUTS_DIR / subtask_id
    folder.mkdir(parents=True)
    (folder / "sum.txt").write_text(text)


@pytest.mark.slow
async def test_a_vote_survives_requestor_sigkills(tmp_path: Path, python: str) -> None:
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    task = "task-1"
    server = Server(python, work_dir)
    try:
        client = await server.start()
        await client.create_task(task, {"parts": 1, "n": 10})
        right = str(sum_of_squares(10))
        for sid, node in (("s1", "honest-1"), ("s2", "cheat"), ("s3", "honest-2")):
            assert await client.next_subtask(task, sid, node) is not None
        put_result(work_dir, task, "s1", right)
        put_result(work_dir, task, "s2", "12345")
        put_result(work_dir, task, "s3", right)
        assert (await client.verify(task, "s1")).result is R.AWAITING_DATA
        client = await server.restart()
        # Still one vote short after the restart; s1's result was kept.
        awaiting = await client.verify(task, "s2")
        assert awaiting.result is R.AWAITING_DATA and "2 of 3" in awaiting.reason
        client = await server.restart()
        last = await client.verify(task, "s3")
        assert last.result is R.SUCCESS
        client = await server.restart()
        # The verdicts the vote stored are answered after a restart, once each.
        outvoted = await client.verify(task, "s2")
        assert outvoted.result is R.FAILURE and "outvoted" in outvoted.reason
        client = await server.restart()
        assert (await client.verify(task, "s1")).result is R.SUCCESS
        assert (work_dir / task / TASK_OUTPUTS_DIR / "total.txt").read_text() == f"{right}\n"
        status = read_task_status(work_dir / task)
        assert status.state == "finished"
        assert status.nodes["cheat"].failures == 1
        assert status.nodes["honest-1"].subtasks == {"success": 1}
    finally:
        server.stop()
