"""Every state transition of the engine, one RPC at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from golem_apps import (
    AlreadyExists,
    InvalidTask,
    MergeContext,
    Part,
    SubtaskNotFound,
    TaskNotFound,
    Verdict,
    VerifyContext,
    VerifyResult,
    WrongState,
)
from golem_apps.constants import SUBTASK_INPUTS_DIR, TASK_INPUTS_DIR
from golem_apps.engine import Hooks, _results, _tasks

from .helpers import (
    TASK,
    create,
    engine_on,
    outputs,
    query,
    task_dir,
    verdict_from_content,
    write_result,
)

pytestmark = pytest.mark.anyio

THREE = [Part(params={"n": n}, name=f"p{n}") for n in range(3)]


async def test_parts_are_handed_out_in_order_each_once(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, THREE)
        assert await engine.has_pending_subtasks(TASK)
        handed = [await engine.next_subtask(TASK, f"s{n}", f"node{n}") for n in range(4)]
        assert [a.params if a else None for a in handed] == [{"n": 0}, {"n": 1}, {"n": 2}, None]
        assert not await engine.has_pending_subtasks(TASK)


async def test_empty_reply_while_the_node_holds_a_live_subtask(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, THREE)
        assert await engine.next_subtask(TASK, "s1", "node-a") is not None
        assert await engine.next_subtask(TASK, "s2", "node-a") is None
        assert await engine.next_subtask(TASK, "s3", "node-b") is not None
        write_result(work_dir, "s1", "done")
        assert (await engine.verify(TASK, "s1")).result is VerifyResult.SUCCESS
        # Its subtask is verified: node-a may get another one.
        assert await engine.next_subtask(TASK, "s4", "node-a") is not None


async def test_duplicate_subtask_id_is_refused_naming_it(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, THREE)
        first = await engine.next_subtask(TASK, "dup", "node-a")
        with pytest.raises(AlreadyExists, match="'dup'"):
            await engine.next_subtask(TASK, "dup", "node-b")
        write_result(work_dir, "dup", "done")
        await engine.verify(TASK, "dup")
        with pytest.raises(AlreadyExists, match="'dup'"):
            await engine.next_subtask(TASK, "dup", "node-b")
        # The same node's call with that id is a retry: the same answer, nothing new.
        assert await engine.next_subtask(TASK, "dup", "node-a") == first
        assert (await engine.task_status(TASK)).parts["done"] == 1


async def test_duplicate_task_id_is_refused(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, THREE)
        with pytest.raises(AlreadyExists, match=repr(TASK)):
            await create(engine, work_dir, THREE)


async def test_unknown_ids_name_the_id(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        with pytest.raises(TaskNotFound, match="'nope'"):
            await engine.has_pending_subtasks("nope")
        with pytest.raises(TaskNotFound, match="'nope'"):
            await engine.next_subtask("nope", "s1", "n")
        with pytest.raises(TaskNotFound, match="'nope'"):
            await engine.verify("nope", "s1")
        with pytest.raises(TaskNotFound, match="'nope'"):
            await engine.discard_subtasks("nope", ["s1"])
        with pytest.raises(TaskNotFound, match="'nope'"):
            await engine.abort_task("nope")
        with pytest.raises(TaskNotFound, match="'nope'"):
            await engine.abort_subtask("nope", "s1")
        await create(engine, work_dir, THREE)
        with pytest.raises(SubtaskNotFound, match=r"'ghost'.*'task-1'"):
            await engine.verify(TASK, "ghost")
        with pytest.raises(SubtaskNotFound, match="'ghost'"):
            await engine.abort_subtask(TASK, "ghost")
        with pytest.raises(SubtaskNotFound, match="'ghost'"):
            await engine.discard_subtasks(TASK, ["ghost"])


async def test_success_of_the_last_part_merges_into_task_outputs(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, THREE)
        (work_dir / TASK / "task_outputs" / "stray.tmp").write_text("left over")
        for n in range(3):
            assert await engine.next_subtask(TASK, f"s{n}", "node") is not None
            write_result(work_dir, f"s{n}", f"result {n}", name="same.txt" if n < 2 else "own.txt")
            assert (await engine.verify(TASK, f"s{n}")).result is VerifyResult.SUCCESS
            if n < 2:
                assert outputs(work_dir) == {"stray.tmp": "left over"}  # no merge yet
        # Colliding names get the part's name; a unique one is kept; nothing else is left.
        assert outputs(work_dir) == {
            "p0-same.txt": "result 0",
            "p1-same.txt": "result 1",
            "own.txt": "result 2",
        }
        assert query(work_dir, "SELECT state FROM tasks") == [("finished",)]
        assert not await engine.has_pending_subtasks(TASK)
        assert await engine.next_subtask(TASK, "late", "node") is None


async def test_missing_or_empty_result_fails_and_the_part_is_retried(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, THREE[:1])
        await engine.next_subtask(TASK, "s1", "node")
        verdict = await engine.verify(TASK, "s1")
        assert verdict.result is VerifyResult.FAILURE
        assert "'s1'" in verdict.reason
        retry = await engine.next_subtask(TASK, "s2", "node")
        assert retry is not None and retry.params == {"n": 0}
        write_result(work_dir, "s2", "")
        verdict = await engine.verify(TASK, "s2")
        assert verdict.result is VerifyResult.FAILURE
        assert "empty" in verdict.reason
        assert await engine.has_pending_subtasks(TASK)


async def test_retry_budget_counts_failures_and_inconclusive(work_dir: Path) -> None:
    hooks = Hooks(verify=verdict_from_content, max_retries=2)
    async with engine_on(work_dir, hooks) as engine:
        await create(engine, work_dir, THREE)
        for n, content in enumerate(["F", "I", "F"]):
            assert await engine.has_pending_subtasks(TASK)
            assert await engine.next_subtask(TASK, f"s{n}", "node") is not None
            write_result(work_dir, f"s{n}", content)
            assert (await engine.verify(TASK, f"s{n}")).result is not VerifyResult.SUCCESS
        # Three failures > max_retries=2: nothing more is handed out.
        assert not await engine.has_pending_subtasks(TASK)
        assert await engine.next_subtask(TASK, "s9", "node") is None


async def test_awaiting_data_keeps_the_subtask_computing(work_dir: Path) -> None:
    hooks = Hooks(verify=verdict_from_content, max_retries=0)
    async with engine_on(work_dir, hooks) as engine:
        await create(engine, work_dir, THREE[:2])
        await engine.next_subtask(TASK, "s1", "node")
        write_result(work_dir, "s1", "A")
        assert (await engine.verify(TASK, "s1")).result is VerifyResult.AWAITING_DATA
        # Not a failure (max_retries=0 would stop the task), not handed out again,
        # and the node still holds it.
        assert await engine.has_pending_subtasks(TASK)
        assert await engine.next_subtask(TASK, "s2", "node") is None
        other = await engine.next_subtask(TASK, "s3", "other")
        assert other is not None and other.params == {"n": 1}
        write_result(work_dir, "s1", "S")
        assert (await engine.verify(TASK, "s1")).result is VerifyResult.SUCCESS


async def test_verify_retried_answers_the_same_verdict(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, THREE)
        await engine.next_subtask(TASK, "s1", "node")
        write_result(work_dir, "s1", "x")
        first = await engine.verify(TASK, "s1")
        assert first.result is VerifyResult.SUCCESS
        assert await engine.verify(TASK, "s1") == first  # a retry, not a new verification
        await engine.next_subtask(TASK, "s2", "node")
        write_result(work_dir, "s2", "")
        failed = await engine.verify(TASK, "s2")
        assert failed.result is VerifyResult.FAILURE and "empty" in failed.reason
        assert await engine.verify(TASK, "s2") == failed
        assert (await engine.task_status(TASK)).failures == 1  # counted once


async def test_a_hook_returning_a_bool_or_raising(work_dir: Path) -> None:
    calls: list[VerifyContext] = []

    async def hook(result: VerifyContext) -> Verdict:
        calls.append(result)
        if result.result_path.read_text() == "boom":
            raise RuntimeError("hook failed")
        return Verdict.coerce(result.result_path.read_text() == "good")

    async with engine_on(work_dir, Hooks(verify=hook)) as engine:
        await create(engine, work_dir, THREE[:1])
        await engine.next_subtask(TASK, "s1", "node-7")
        write_result(work_dir, "s1", "boom")
        with pytest.raises(RuntimeError, match="hook failed"):
            await engine.verify(TASK, "s1")
        write_result(work_dir, "s1", "good")  # still computing: the node may verify again
        assert (await engine.verify(TASK, "s1")).result is VerifyResult.SUCCESS
        context = calls[-1]
        assert (context.part_name, context.params, context.node_id) == ("p0", {"n": 0}, "node-7")


async def test_abort_subtask_returns_the_part(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, THREE[:1])
        await engine.next_subtask(TASK, "s1", "node")
        assert not await engine.has_pending_subtasks(TASK)
        await engine.abort_subtask(TASK, "s1")
        assert await engine.has_pending_subtasks(TASK)
        with pytest.raises(WrongState, match=r"'s1'.*aborted"):
            await engine.abort_subtask(TASK, "s1")
        write_result(work_dir, "s1", "late")
        with pytest.raises(WrongState, match="'s1'"):
            await engine.verify(TASK, "s1")
        again = await engine.next_subtask(TASK, "s2", "node")  # the node holds nothing now
        assert again is not None and again.params == {"n": 0}


async def test_abort_task_refuses_later_calls(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, THREE)
        await engine.next_subtask(TASK, "s1", "node")
        await engine.abort_task(TASK)
        write_result(work_dir, "s1", "x")
        calls = [
            engine.has_pending_subtasks(TASK),
            engine.next_subtask(TASK, "s2", "node"),
            engine.verify(TASK, "s1"),
            engine.discard_subtasks(TASK, ["s1"]),
            engine.abort_subtask(TASK, "s1"),
            engine.abort_task(TASK),
        ]
        for call in calls:
            with pytest.raises(WrongState, match=f"'{TASK}' was aborted"):
                await call


async def test_abort_task_cancels_a_running_verification(work_dir: Path) -> None:
    started = anyio.Event()
    cancelled = []

    async def slow_hook(result: VerifyContext) -> Verdict:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(result.subtask_id)
            raise
        raise AssertionError("unreachable")

    async with engine_on(work_dir, Hooks(verify=slow_hook)) as engine:
        await create(engine, work_dir, THREE)
        await engine.next_subtask(TASK, "s1", "node")
        write_result(work_dir, "s1", "x")
        errors: list[Exception] = []

        async def verify() -> None:
            try:
                await engine.verify(TASK, "s1")
            except WrongState as exc:
                errors.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(verify)
                await started.wait()
                await engine.abort_task(TASK)
        assert cancelled == ["s1"]
        assert len(errors) == 1 and "'s1'" in str(errors[0]) and "aborted" in str(errors[0])
        assert query(work_dir, "SELECT state FROM subtasks") == [("computing",)]


async def test_a_second_verify_while_the_first_runs_is_refused(work_dir: Path) -> None:
    started, release = anyio.Event(), anyio.Event()

    async def hook(result: VerifyContext) -> Verdict:
        started.set()
        await release.wait()
        return Verdict(VerifyResult.SUCCESS)

    async with engine_on(work_dir, Hooks(verify=hook)) as engine:
        await create(engine, work_dir, THREE)
        await engine.next_subtask(TASK, "s1", "node")
        write_result(work_dir, "s1", "x")
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(engine.verify, TASK, "s1")
                await started.wait()
                with pytest.raises(WrongState, match=r"'s1'.*being verified"):
                    await engine.verify(TASK, "s1")
                release.set()


async def test_discard_returns_the_part_to_the_pool(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, THREE)
        for n in range(2):
            await engine.next_subtask(TASK, f"s{n}", "node")
            write_result(work_dir, f"s{n}", "x")
            await engine.verify(TASK, f"s{n}")
        await engine.next_subtask(TASK, "s2", "node")
        write_result(work_dir, "s2", "")
        await engine.verify(TASK, "s2")  # failure: not discardable
        assert await engine.discard_subtasks(TASK, ["s0", "s2"]) == ["s0"]
        assert await engine.discard_subtasks(TASK, ["s0"]) == []  # already discarded
        handed = [await engine.next_subtask(TASK, f"r{n}", f"other{n}") for n in range(3)]
        assert [a.params if a else None for a in handed[:2]] == [{"n": 0}, {"n": 2}]
        assert handed[2] is None  # every other part is computing or done


A_B_C = [
    Part(params={"part": "A"}, name="A"),
    Part(params={"part": "B"}, name="B", depends_on=["A"]),
    Part(params={"part": "C"}, name="C", depends_on=["A"]),
    Part(params={"part": "D"}, name="D", depends_on=["B"]),
]


async def test_dependents_wait_and_receive_the_result_as_a_resource(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, A_B_C)
        first = await engine.next_subtask(TASK, "a1", "n1")
        assert first is not None and first.params == {"part": "A"}
        assert not await engine.has_pending_subtasks(TASK)  # B, C, D wait for A
        assert await engine.next_subtask(TASK, "x", "n2") is None
        write_result(work_dir, "a1", "A's result", name="out.bin")
        await engine.verify(TASK, "a1")
        b = await engine.next_subtask(TASK, "b1", "n1")
        c = await engine.next_subtask(TASK, "c1", "n2")
        assert b is not None and c is not None
        assert (b.params, b.resources) == ({"part": "B"}, ["A-out.bin"])
        assert (c.params, c.resources) == ({"part": "C"}, ["A-out.bin"])
        inputs = work_dir / TASK / SUBTASK_INPUTS_DIR
        assert (inputs / "A-out.bin").read_text() == "A's result"
        assert await engine.next_subtask(TASK, "d0", "n3") is None  # D waits for B


async def test_discard_cascades_to_dependents(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, A_B_C)
        for subtask in ("a1", "b1", "d1"):
            assert await engine.next_subtask(TASK, subtask, "n") is not None
            write_result(work_dir, subtask, f"{subtask} v1")
            await engine.verify(TASK, subtask)
        assert await engine.next_subtask(TASK, "c1", "n") is not None  # C is computing
        discarded = await engine.discard_subtasks(TASK, ["a1"])
        # A's result is gone: B and D (done) and C (computing on A's result) go too.
        assert sorted(discarded) == ["a1", "b1", "c1", "d1"]
        states = query(work_dir, "SELECT id, state FROM subtasks ORDER BY id")
        assert states == [(s, "discarded") for s in ("a1", "b1", "c1", "d1")]
        with pytest.raises(WrongState, match="'c1'"):
            await engine.verify(TASK, "c1")
        # Only A is ready again; the others wait for it.
        again = await engine.next_subtask(TASK, "a2", "n")
        assert again is not None and again.params == {"part": "A"}
        assert await engine.next_subtask(TASK, "x", "other") is None
        write_result(work_dir, "a2", "A v2", name="result.txt")
        await engine.verify(TASK, "a2")
        b = await engine.next_subtask(TASK, "b2", "n")
        assert b is not None and b.resources == ["A-result.txt"]
        # The recomputed result replaced the old file of the same name.
        assert (work_dir / TASK / SUBTASK_INPUTS_DIR / "A-result.txt").read_text() == "A v2"


async def test_discarding_a_dependent_leaves_its_dependency(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, A_B_C)
        for subtask in ("a1", "b1"):
            await engine.next_subtask(TASK, subtask, "n")
            write_result(work_dir, subtask, subtask)
            await engine.verify(TASK, subtask)
        assert await engine.discard_subtasks(TASK, ["b1"]) == ["b1"]
        assert query(work_dir, "SELECT id, state FROM subtasks ORDER BY id") == [
            ("a1", "success"),
            ("b1", "discarded"),
        ]
        handed = await engine.next_subtask(TASK, "b2", "n")
        assert handed is not None and handed.params == {"part": "B"}


async def test_task_inputs_resources_are_placed_in_subtask_inputs(work_dir: Path) -> None:
    folder = task_dir(work_dir)
    (folder / TASK_INPUTS_DIR / "scene.txt").write_text("scene")
    parts = [Part(params={}, resources=["scene.txt"], name="only")]
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, parts)
        handed = await engine.next_subtask(TASK, "s1", "n")
        assert handed is not None and handed.resources == ["scene.txt"]
        assert (folder / SUBTASK_INPUTS_DIR / "scene.txt").read_text() == "scene"


async def test_a_resource_vanished_from_task_inputs_is_reported(work_dir: Path) -> None:
    folder = task_dir(work_dir)
    (folder / TASK_INPUTS_DIR / "scene.txt").write_text("scene")
    parts = [Part(params={}, resources=["scene.txt"], name="only")]
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, parts)
        (folder / TASK_INPUTS_DIR / "scene.txt").unlink()
        with pytest.raises(InvalidTask, match=r"'only'.*'s1'.*'scene.txt'"):
            await engine.next_subtask(TASK, "s1", "n")
        # The hand-out was undone: the part is ready again.
        assert await engine.has_pending_subtasks(TASK)


async def test_custom_merge_sees_every_result_in_order(work_dir: Path) -> None:
    seen: list[MergeContext] = []

    async def merge(task: MergeContext) -> None:
        seen.append(task)
        text = "".join([r.path.read_text() async for r in task.results])
        (task.outputs_dir / "all.txt").write_text(text)
        with pytest.raises(RuntimeError, match="async for"):
            list(task.results)  # a plain for would block the event loop

    async with engine_on(work_dir, Hooks(merge=merge)) as engine:
        await create(engine, work_dir, THREE, params={"title": "t"})
        for n in (0, 1, 2):
            await engine.next_subtask(TASK, f"s{n}", f"node{n}")
        for n in (2, 0, 1):  # verified out of order
            write_result(work_dir, f"s{n}", str(n))
            await engine.verify(TASK, f"s{n}")
        assert outputs(work_dir) == {"all.txt": "012"}
        (context,) = seen
        assert context.params == {"title": "t"} and len(context.results) == 3
        results = [r async for r in context.results]
        assert [r.name for r in results] == ["p0", "p1", "p2"]
        assert [r.params for r in results] == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_a_merge_streams_the_results_a_batch_at_a_time(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sync merge (in a worker thread) iterates with a plain for; the results are
    # read a batch per transaction, never all at once.
    monkeypatch.setattr(_results, "MERGE_BATCH", 4)
    batches: list[int] = []
    part_results = _tasks.part_results

    def counted(*args: Any) -> Any:
        batch = part_results(*args)
        batches.append(len(batch))
        return batch

    monkeypatch.setattr(_tasks, "part_results", counted)
    names: list[str] = []

    async def merge(task: MergeContext) -> None:
        def sync_merge() -> None:
            names.extend(r.name for r in task.results)

        await anyio.to_thread.run_sync(sync_merge)

    parts = [Part(params={"n": n}, name=f"p{n:02d}") for n in range(10)]
    async with engine_on(work_dir, Hooks(merge=merge)) as engine:
        await create(engine, work_dir, parts)
        for n in reversed(range(10)):
            await engine.next_subtask(TASK, f"s{n}", f"node{n}")
            write_result(work_dir, f"s{n}", str(n))
            await engine.verify(TASK, f"s{n}")
    assert names == [f"p{n:02d}" for n in range(10)]
    assert batches == [4, 4, 2]


async def test_discard_on_a_finished_task_reopens_it_and_merges_again(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, [Part(params={"n": 0}, name="only")])
        await engine.next_subtask(TASK, "s0", "node")
        write_result(work_dir, "s0", "v1")
        await engine.verify(TASK, "s0")
        assert outputs(work_dir) == {"result.txt": "v1"}
        assert not await engine.has_pending_subtasks(TASK)
        # The node restarts the subtask of the finished task: its part is ready again.
        assert await engine.discard_subtasks(TASK, ["s0"]) == ["s0"]
        assert await engine.has_pending_subtasks(TASK)
        assert await engine.next_subtask(TASK, "s1", "node") is not None
        write_result(work_dir, "s1", "v2")
        await engine.verify(TASK, "s1")
        assert outputs(work_dir) == {"result.txt": "v2"}
