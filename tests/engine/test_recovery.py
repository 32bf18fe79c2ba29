"""Hand-outs a restart may have lost, backup copies, and retried NextSubtask/Verify calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from golem_apps import AlreadyExists, Part, VerifyResult
from golem_apps.engine import Hooks, _db

from .helpers import TASK, create, engine_on, outputs, query, verdict_from_content, write_result

pytestmark = pytest.mark.anyio

TWO = [Part(params={"n": n}) for n in range(2)]
R = VerifyResult


async def test_a_lost_hand_out_gets_a_backup_copy_once_nothing_else_is_pending(
    work_dir: Path,
) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, TWO)
        await engine.next_subtask(TASK, "s0", "n0")
        await engine.next_subtask(TASK, "lost", "n1")  # its reply never arrives
        assert not await engine.has_pending_subtasks(TASK)
    async with engine_on(work_dir) as engine:
        # Part 0 is still out too: both hand-outs are due for a backup copy, no timeout.
        assert await engine.has_pending_subtasks(TASK)
        backup0 = await engine.next_subtask(TASK, "b0", "n2")
        backup1 = await engine.next_subtask(TASK, "b1", "n3")
        assert backup0 is not None and backup0.params == {"n": 0}
        assert backup1 is not None and backup1.params == {"n": 1}
        assert not await engine.has_pending_subtasks(TASK)
        assert await engine.next_subtask(TASK, "b2", "n4") is None
        # s0's result comes first: it wins, its backup is not used.
        write_result(work_dir, "s0", "zero")
        assert (await engine.verify(TASK, "s0")).result is R.SUCCESS
        write_result(work_dir, "b0", "zero again")
        late = await engine.verify(TASK, "b0")
        assert late.result is R.SUCCESS and "not used" in late.reason and "'s0'" in late.reason
        # The backup of the lost hand-out comes first: it wins; the task is merged.
        write_result(work_dir, "b1", "one")
        assert (await engine.verify(TASK, "b1")).result is R.SUCCESS
        assert outputs(work_dir) == {"0-result.txt": "zero", "1-result.txt": "one"}
        # The lost hand-out's result after all: answered, not used, counted against nobody.
        write_result(work_dir, "lost", "one, late")
        lost = await engine.verify(TASK, "lost")
        assert lost.result is R.SUCCESS and "not used" in lost.reason
        assert outputs(work_dir) == {"0-result.txt": "zero", "1-result.txt": "one"}
        status = await engine.task_status(TASK)
        assert status.state == "finished" and status.failures == 0
        assert status.nodes["n1"].subtasks == {"superseded": 1}
        assert status.nodes["n1"].failures == 0


async def test_the_node_that_lost_its_hand_out_gets_work_again(work_dir: Path) -> None:
    # One node: the hand-out it never received does not hold it (one live subtask per node).
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, TWO)
        await engine.next_subtask(TASK, "lost", "node")
    async with engine_on(work_dir) as engine:
        first = await engine.next_subtask(TASK, "s1", "node")
        assert first is not None and first.params == {"n": 1}  # the ready part first
        assert await engine.next_subtask(TASK, "s2", "node") is None  # s1 is live
        write_result(work_dir, "s1", "one")
        await engine.verify(TASK, "s1")
        backup = await engine.next_subtask(TASK, "s2", "node")
        assert backup is not None and backup.params == {"n": 0}
        write_result(work_dir, "s2", "zero")
        assert (await engine.verify(TASK, "s2")).result is R.SUCCESS
        assert (await engine.task_status(TASK)).state == "finished"
    assert query(work_dir, "SELECT id, state FROM subtasks ORDER BY id") == [
        ("lost", "superseded"),
        ("s1", "success"),
        ("s2", "success"),
    ]


async def test_a_failed_backup_leaves_the_part_to_a_new_copy(work_dir: Path) -> None:
    hooks = Hooks(verify=verdict_from_content)
    async with engine_on(work_dir, hooks) as engine:
        await create(engine, work_dir, TWO[:1])
        await engine.next_subtask(TASK, "lost", "n1")
    async with engine_on(work_dir, hooks) as engine:
        await engine.next_subtask(TASK, "b1", "n2")
        write_result(work_dir, "b1", "F")
        assert (await engine.verify(TASK, "b1")).result is R.FAILURE
        # First verified wins: the lost hand-out is not used; the part is ready again.
        assert await engine.has_pending_subtasks(TASK)
        again = await engine.next_subtask(TASK, "c1", "n3")
        assert again is not None and again.params == {"n": 0}
        write_result(work_dir, "lost", "S")
        assert "not used" in (await engine.verify(TASK, "lost")).reason
        write_result(work_dir, "c1", "S")
        assert (await engine.verify(TASK, "c1")).result is R.SUCCESS
        assert outputs(work_dir) == {"result.txt": "S"}


async def test_a_retried_next_subtask_answers_the_same_assignment(work_dir: Path) -> None:
    parts = [Part(params={"n": 0}, resources=["in.txt"]), Part(params={"n": 1})]
    async with engine_on(work_dir) as engine:
        (work_dir / TASK / "task_inputs").mkdir(parents=True)
        (work_dir / TASK / "task_inputs" / "in.txt").write_text("input")
        await create(engine, work_dir, parts)
        first = await engine.next_subtask(TASK, "s1", "node")
        assert first is not None
        assert await engine.next_subtask(TASK, "s1", "node") == first
        with pytest.raises(AlreadyExists, match="'s1'"):
            await engine.next_subtask(TASK, "s1", "other")  # not a retry: another node
    async with engine_on(work_dir) as engine:
        # After a restart too; and the node has it now, so no backup copy is due.
        assert await engine.next_subtask(TASK, "s1", "node") == first
        second = await engine.next_subtask(TASK, "s2", "other")
        assert second is not None and second.params == {"n": 1}
        assert not await engine.has_pending_subtasks(TASK)
        write_result(work_dir, "s1", "x")
        await engine.verify(TASK, "s1")
        # Verified since (its Verify overtook the retry): still the same answer.
        assert await engine.next_subtask(TASK, "s1", "node") == first


async def test_a_retried_verify_of_the_merging_subtask_waits_for_the_merge(
    work_dir: Path,
) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, TWO)
        for sid in ("s0", "s1"):
            await engine.next_subtask(TASK, sid, f"node-{sid}")
            write_result(work_dir, sid, sid)
        await engine.verify(TASK, "s0")
        await engine.verify(TASK, "s1")
    # What a crash in the merge leaves: the task merging, task_outputs half written.
    database = _db.Database(work_dir / _db.DB_NAME)
    database.run(lambda conn: conn.execute("UPDATE tasks SET state = 'merging'"))
    database.close()
    # (A new file: the merged one is a hard link of the result, which stays whole.)
    stray = work_dir / TASK / "task_outputs" / "0-result.txt"
    stray.unlink()
    stray.write_text("half")
    async with engine_on(work_dir) as engine:
        retried = await engine.verify(TASK, "s1")
        assert retried.result is R.SUCCESS
        assert outputs(work_dir) == {"0-result.txt": "s0", "1-result.txt": "s1"}
        assert (await engine.task_status(TASK)).state == "finished"
        assert await engine.verify(TASK, "s1") == retried
