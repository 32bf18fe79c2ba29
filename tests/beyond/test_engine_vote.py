"""The engine's redundancy (a vote per part), node bans and task status, one RPC at a time."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from golem_apps import (
    Part,
    TaskStatus,
    Verdict,
    VerifyContext,
    VerifyResult,
    WrongState,
    read_task_status,
)
from golem_apps.engine import Engine, Hooks
from golem_apps.engine._db import Database

from ..engine.helpers import TASK, create, engine_on, outputs, query, write_result

pytestmark = pytest.mark.anyio

R = VerifyResult
TWO = [Part(params={"n": n}, name=f"p{n}") for n in range(2)]


async def test_each_copy_of_a_part_goes_to_a_distinct_node(work_dir: Path) -> None:
    async with engine_on(work_dir, Hooks(redundancy=3)) as engine:
        await create(engine, work_dir, TWO)
        first = await engine.next_subtask(TASK, "a0", "node-a")
        assert first is not None and first.params == {"n": 0}
        write_result(work_dir, "a0", "x")
        assert (await engine.verify(TASK, "a0")).result is R.AWAITING_DATA
        # node-a already computed p0: it gets p1, never a second copy of p0.
        second = await engine.next_subtask(TASK, "a1", "node-a")
        assert second is not None and second.params == {"n": 1}
        # Other nodes take p0's remaining two copies, then p1's.
        got = [await engine.next_subtask(TASK, f"b{i}", f"node-b{i}") for i in range(5)]
        params = [g.params["n"] if g else None for g in got]
        assert params == [0, 0, 1, 1, None]


async def test_majority_wins_the_minority_fails_with_a_reason(work_dir: Path) -> None:
    async with engine_on(work_dir, Hooks(redundancy=3)) as engine:
        await create(engine, work_dir, [Part(params={}, name="only")])
        for sid, node in (("s1", "honest-1"), ("s2", "cheat"), ("s3", "honest-2")):
            assert await engine.next_subtask(TASK, sid, node) is not None
        write_result(work_dir, "s1", "42")
        write_result(work_dir, "s2", "41")
        write_result(work_dir, "s3", "42")
        first = await engine.verify(TASK, "s1")
        assert first.result is R.AWAITING_DATA and "1 of 3" in first.reason
        # Asked again (as a node re-queues it) it still awaits the others.
        again = await engine.verify(TASK, "s1")
        assert again.result is R.AWAITING_DATA and "1 of 3" in again.reason
        assert (await engine.verify(TASK, "s2")).result is R.AWAITING_DATA
        # The last result completes the ballot: 2 of 3 agree, the part is done, merged.
        last = await engine.verify(TASK, "s3")
        assert last.result is R.SUCCESS and "2 of 3" in last.reason
        assert outputs(work_dir) == {"result.txt": "42"}
        # The subtasks that awaited data get their verdicts when verified again.
        cheat = await engine.verify(TASK, "s2")
        assert cheat.result is R.FAILURE and "outvoted" in cheat.reason
        assert (await engine.verify(TASK, "s1")).result is R.SUCCESS
        # A retried Verify answers the stored verdict again.
        assert await engine.verify(TASK, "s1") == await engine.verify(TASK, "s1")
        assert (await engine.verify(TASK, "s2")).reason == cheat.reason
        status = await engine.task_status(TASK)
        assert status.state == "finished" and status.failures == 1
        assert status.nodes["cheat"].failures == 1
        assert status.nodes["cheat"].subtasks == {"failure": 1}
        assert status.nodes["honest-1"].subtasks == {"success": 1}


async def test_no_majority_hands_out_more_copies(work_dir: Path) -> None:
    async with engine_on(work_dir, Hooks(redundancy=2)) as engine:
        await create(engine, work_dir, [Part(params={}, name="only")])
        assert await engine.next_subtask(TASK, "s1", "n1") is not None
        assert await engine.next_subtask(TASK, "s2", "n2") is not None
        assert await engine.next_subtask(TASK, "s9", "n9") is None  # both copies are out
        write_result(work_dir, "s1", "A")
        write_result(work_dir, "s2", "B")
        assert (await engine.verify(TASK, "s1")).result is R.AWAITING_DATA
        tie = await engine.verify(TASK, "s2")
        assert tie.result is R.AWAITING_DATA and "no majority" in tie.reason
        # One more copy, to a third node; it agrees with s2.
        assert await engine.has_pending_subtasks(TASK)
        assert await engine.next_subtask(TASK, "s3", "n1") is None  # n1 voted already
        assert await engine.next_subtask(TASK, "s3", "n3") is not None
        write_result(work_dir, "s3", "B")
        assert (await engine.verify(TASK, "s3")).result is R.SUCCESS
        assert (await engine.verify(TASK, "s2")).result is R.SUCCESS
        assert (await engine.verify(TASK, "s1")).result is R.FAILURE
        assert outputs(work_dir) == {"result.txt": "B"}


async def test_lost_copies_of_a_voted_part_get_backups_on_new_nodes(work_dir: Path) -> None:
    # Three copies out, then a restart: each may have been lost. Each gets one backup
    # copy, on a node that holds no copy of the part; the first result of each
    # hand-out (the copy or its backup) is the one that votes.
    async with engine_on(work_dir, Hooks(redundancy=3)) as engine:
        await create(engine, work_dir, [Part(params={}, name="only")])
        for sid, node in (("s1", "n1"), ("s2", "n2"), ("s3", "n3")):
            assert await engine.next_subtask(TASK, sid, node) is not None
        assert not await engine.has_pending_subtasks(TASK)
    async with engine_on(work_dir, Hooks(redundancy=3)) as engine:
        assert await engine.has_pending_subtasks(TASK)
        for node in ("n1", "n2", "n3"):  # they hold a copy of the part: no backup for them
            assert await engine.next_subtask(TASK, f"again-{node}", node) is None
        for sid, node in (("b4", "n4"), ("b5", "n5"), ("b6", "n6")):
            assert await engine.next_subtask(TASK, sid, node) is not None
        assert not await engine.has_pending_subtasks(TASK)
        assert await engine.next_subtask(TASK, "b7", "n7") is None  # each hand-out has one
        backup_of = dict(
            query(work_dir, "SELECT id, copy_of FROM subtasks WHERE copy_of IS NOT NULL")
        )
        assert sorted(backup_of) == ["b4", "b5", "b6"]
        assert sorted(backup_of.values()) == ["s1", "s2", "s3"]
        first, second, third = (b for b, _ in sorted(backup_of.items(), key=lambda kv: kv[1]))
        # s1 answers itself; s2's and s3's backups answer first, one of them disagreeing.
        write_result(work_dir, "s1", "42")
        assert (await engine.verify(TASK, "s1")).result is R.AWAITING_DATA
        write_result(work_dir, second, "42")
        assert (await engine.verify(TASK, second)).result is R.AWAITING_DATA
        write_result(work_dir, third, "41")
        last = await engine.verify(TASK, third)
        assert last.result is R.FAILURE and "outvoted" in last.reason
        assert outputs(work_dir) == {"result.txt": "42"}
        assert (await engine.verify(TASK, "s1")).result is R.SUCCESS
        assert (await engine.verify(TASK, second)).result is R.SUCCESS
        # The copies that came second are not used, and counted against nobody.
        for late in (first, "s2", "s3"):
            write_result(work_dir, late, "whatever")
            verdict = await engine.verify(TASK, late)
            assert verdict.result is R.SUCCESS and "not used" in verdict.reason
        status = await engine.task_status(TASK)
        assert status.state == "finished" and status.failures == 1
        assert status.nodes[f"n{third[1:]}"].failures == 1  # b5 went to n5, and so on
        assert all(status.nodes[n].failures == 0 for n in ("n1", "n2", "n3"))


async def test_a_compare_hook_decides_what_agrees(work_dir: Path) -> None:
    async def close(a: VerifyContext, b: VerifyContext) -> bool:
        x, y = float(a.result_path.read_text()), float(b.result_path.read_text())
        return abs(x - y) < 0.01

    async with engine_on(work_dir, Hooks(redundancy=3, compare=close)) as engine:
        await create(engine, work_dir, [Part(params={}, name="only")])
        for sid, value in (("s1", "1.000"), ("s2", "1.001"), ("s3", "7.5")):
            assert await engine.next_subtask(TASK, sid, f"node-{sid}") is not None
            write_result(work_dir, sid, value)
        for sid in ("s1", "s2"):
            assert (await engine.verify(TASK, sid)).result is R.AWAITING_DATA
        assert (await engine.verify(TASK, "s3")).result is R.FAILURE  # outvoted at once
        assert (await engine.verify(TASK, "s1")).result is R.SUCCESS
        assert outputs(work_dir) == {"result.txt": "1.000"}  # the oldest of the majority


async def test_the_verify_hook_still_rejects_single_results(work_dir: Path) -> None:
    async def hook(result: VerifyContext) -> bool:
        return result.result_path.read_text() != "bad"

    async with engine_on(work_dir, Hooks(verify=hook_verdict(hook), redundancy=2)) as engine:
        await create(engine, work_dir, [Part(params={}, name="only")])
        assert await engine.next_subtask(TASK, "s1", "n1") is not None
        write_result(work_dir, "s1", "bad")
        assert (await engine.verify(TASK, "s1")).result is R.FAILURE
        # The rejected copy is handed out again, to another node.
        assert await engine.next_subtask(TASK, "s2", "n1") is None
        assert await engine.next_subtask(TASK, "s2", "n2") is not None


def hook_verdict(
    hook: Callable[[VerifyContext], Awaitable[bool]],
) -> Callable[[VerifyContext], Awaitable[Verdict]]:
    """An app's bool hook as the engine calls it."""

    async def run(context: VerifyContext) -> Verdict:
        return Verdict.coerce(await hook(context))

    return run


async def test_a_node_is_banned_after_n_failures_and_gets_nothing_more(work_dir: Path) -> None:
    parts = [Part(params={"n": n}, name=f"p{n}") for n in range(4)]
    async with engine_on(work_dir, Hooks(ban_after=2)) as engine:
        await create(engine, work_dir, parts)
        for sid in ("s1", "s2"):
            assert await engine.next_subtask(TASK, sid, "bad-node") is not None
            write_result(work_dir, sid, "")  # empty: fails the default check
            assert (await engine.verify(TASK, sid)).result is R.FAILURE
        assert await engine.has_pending_subtasks(TASK)
        assert await engine.next_subtask(TASK, "s3", "bad-node") is None
        assert await engine.next_subtask(TASK, "s4", "good-node") is not None
        status = await engine.task_status(TASK)
        assert list(status.bans) == ["bad-node"]
        assert "2 failed verifications" in status.bans["bad-node"]
        assert "empty" in status.bans["bad-node"]
        # The ban is in the status file before Verify answered.
        assert read_task_status(work_dir / TASK).bans == status.bans
    # Durable: a restarted engine still refuses the node.
    async with engine_on(work_dir, Hooks(ban_after=2)) as engine:
        assert await engine.next_subtask(TASK, "s5", "bad-node") is None


async def hand_out(engine: Engine, subtask_id: str, node_id: str) -> int | None:
    """NextSubtask; the part number handed out, or None."""
    handed = await engine.next_subtask(TASK, subtask_id, node_id)
    return None if handed is None else int(handed.params["n"])


async def test_a_ban_voids_the_nodes_results_waiting_for_the_vote(work_dir: Path) -> None:
    # p1 gets the banned node's wrong sum and one more wrong one: without the void
    # they would be a wrong 2-of-3 majority.
    async with engine_on(work_dir, Hooks(redundancy=3, ban_after=1)) as engine:
        await create(engine, work_dir, TWO)
        for sid, node in (("a1", "h1"), ("a2", "cheat"), ("a3", "h2")):
            assert await hand_out(engine, sid, node) == 0
        write_result(work_dir, "a2", "41")
        assert (await engine.verify(TASK, "a2")).result is R.AWAITING_DATA
        assert await hand_out(engine, "b1", "cheat") == 1
        write_result(work_dir, "b1", "41")
        assert (await engine.verify(TASK, "b1")).result is R.AWAITING_DATA
        for sid, result in (("a1", "42"), ("a3", "42")):
            write_result(work_dir, sid, result)
        await engine.verify(TASK, "a1")
        assert await hand_out(engine, "b2", "h1") == 1
        # p0's vote: a2 is outvoted and its node banned, which voids b1.
        assert (await engine.verify(TASK, "a3")).result is R.SUCCESS
        voided = await engine.verify(TASK, "b1")
        assert voided.result is R.FAILURE and "voided" in voided.reason
        # b1's copy of p1 is handed out again, to another node.
        assert await hand_out(engine, "b3", "h2") == 1
        assert await hand_out(engine, "b4", "h3") == 1
        for sid, result in (("b2", "41"), ("b3", "7"), ("b4", "7")):
            write_result(work_dir, sid, result)
            await engine.verify(TASK, sid)
        assert outputs(work_dir) == {"p0-result.txt": "42", "p1-result.txt": "7"}
        status = await engine.task_status(TASK)
        assert status.state == "finished"
        # Voided is not a failure of the task's budget: a2's and b2's are.
        assert status.failures == 2
        assert status.nodes["cheat"].subtasks == {"failure": 1, "voided": 1}


async def test_no_ban_by_default(work_dir: Path) -> None:
    async with engine_on(work_dir, Hooks(max_retries=10)) as engine:
        await create(engine, work_dir, TWO)
        for sid in ("s1", "s2", "s3"):
            assert await engine.next_subtask(TASK, sid, "node") is not None
            write_result(work_dir, sid, "")
            assert (await engine.verify(TASK, sid)).result is R.FAILURE
        assert await engine.next_subtask(TASK, "s4", "node") is not None
        assert (await engine.task_status(TASK)).bans == {}


async def test_status_counts_parts_nodes_and_retries(work_dir: Path) -> None:
    parts = [Part(params={}, name="a"), Part(params={}, name="b", depends_on=["a"])]
    async with engine_on(work_dir, Hooks(max_retries=5)) as engine:
        await create(engine, work_dir, [*parts, Part(params={}, name="c")])
        status = await engine.task_status(TASK)
        assert status.parts == {"ready": 2, "blocked": 1, "computing": 0, "done": 0, "total": 3}
        assert await engine.next_subtask(TASK, "s1", "n1") is not None
        write_result(work_dir, "s1", "")
        assert (await engine.verify(TASK, "s1")).result is R.FAILURE
        assert await engine.next_subtask(TASK, "s2", "n2") is not None
        status = await engine.task_status(TASK)
        assert status.parts["computing"] == 1 and status.parts["ready"] == 1
        assert status.nodes["n1"].subtasks == {"failure": 1}
        assert status.nodes["n2"].subtasks == {"computing": 1}
        assert (status.failures, status.max_retries, status.retries_left) == (1, 5, 5)
    # The file written when the engine closed says the same, and is valid JSON.
    on_disk = json.loads((work_dir / TASK / "status.json").read_text())
    assert on_disk["nodes"]["n2"]["subtasks"] == {"computing": 1}
    assert read_task_status(work_dir / TASK) == status
    assert not (work_dir / TASK / "task_outputs" / "status.json").exists()


async def test_the_status_file_follows_the_task_without_being_asked(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, [Part(params={}, name="only")])
        assert await engine.next_subtask(TASK, "s1", "n1") is not None
        write_result(work_dir, "s1", "ok")
        assert (await engine.verify(TASK, "s1")).result is R.SUCCESS
        # The task's end is written at once, before Verify answers.
        status = read_task_status(work_dir / TASK)
        assert status.state == "finished"
        assert status.parts["done"] == 1


async def test_an_old_database_gets_the_new_columns(work_dir: Path) -> None:
    import sqlite3

    path = work_dir / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE tasks (id TEXT PRIMARY KEY, state TEXT NOT NULL, params TEXT NOT NULL,"
        " total INTEGER NOT NULL DEFAULT 0, done INTEGER NOT NULL DEFAULT 0,"
        " failures INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO tasks (id, state, params) VALUES ('t', 'active', '{}');"
        "CREATE TABLE subtasks (task TEXT NOT NULL, id TEXT NOT NULL, part INTEGER NOT NULL,"
        " node TEXT NOT NULL, state TEXT NOT NULL, result TEXT, PRIMARY KEY (task, id))"
        " WITHOUT ROWID;"
        "CREATE INDEX live_by_node ON subtasks (task, node) WHERE state = 'computing';"
        "INSERT INTO subtasks VALUES ('t', 's1', 0, 'n1', 'success', 'r.txt');"
    )
    conn.close()
    Database(path).close()
    assert query_columns(path, "tasks") >= {"redundancy", "ban_after"}
    assert query_columns(path, "subtasks") >= {"reason", "told", "lost", "copy_of", "verdict"}
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    indexes = {row[0] for row in rows}
    assert {"current_by_node", "lost_by_part", "awaiting_by_node"} <= indexes
    assert "live_by_node" not in indexes
    # The status counters are computed once from the existing rows.
    counts = conn.execute("SELECT task, node, state, n FROM subtask_counts").fetchall()
    assert counts == [("t", "n1", "success", 1)]
    conn.close()


def query_columns(path: Path, table: str) -> set[str]:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    finally:
        conn.close()


async def test_discarding_a_voted_result_restarts_the_whole_vote(work_dir: Path) -> None:
    async with engine_on(work_dir, Hooks(redundancy=2)) as engine:
        await create(engine, work_dir, TWO)
        for sid, node in (("s1", "n1"), ("s2", "n2")):
            assert await engine.next_subtask(TASK, sid, node) is not None
            write_result(work_dir, sid, "same")
        assert (await engine.verify(TASK, "s1")).result is R.AWAITING_DATA
        assert (await engine.verify(TASK, "s2")).result is R.SUCCESS
        assert sorted(await engine.discard_subtasks(TASK, ["s2"])) == ["s1", "s2"]
        assert query(work_dir, "SELECT status, wanted FROM parts WHERE idx = 0") == [("ready", 2)]
        with pytest.raises(WrongState):
            await engine.verify(TASK, "s1")  # its verdict went with the vote


async def test_the_status_file_is_refreshed_while_the_task_runs(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, TWO)
        # Nobody asks for the status: the background writer refreshes the file.
        created = await wait_for_status(work_dir, lambda s: s.parts["ready"] == 2)
        assert created.parts["computing"] == 0
        assert await engine.next_subtask(TASK, "s1", "n1") is not None
        status = await wait_for_status(work_dir, lambda s: s.parts["computing"] == 1)
        assert status.nodes["n1"].subtasks == {"computing": 1}


async def wait_for_status(work_dir: Path, check: Callable[[TaskStatus], bool]) -> TaskStatus:
    """The task's status file once ``check`` holds for it."""
    with anyio.fail_after(10):  # a hang guard, not a timing check
        while True:
            status = await anyio.to_thread.run_sync(_status_or_none, work_dir / TASK)
            if status is not None and check(status):
                return status
            await anyio.sleep(0.02)


def _status_or_none(task_dir: Path) -> TaskStatus | None:
    try:
        return read_task_status(task_dir)
    except FileNotFoundError:
        return None
