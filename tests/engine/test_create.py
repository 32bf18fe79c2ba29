"""CreateTask's checks, batching, durability across restarts, and thread discipline."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from golem_apps import InvalidTask, MergeContext, Part, TaskContext, VerifyResult
from golem_apps.constants import TASK_INPUTS_DIR
from golem_apps.engine import Engine, Hooks, _db, _files, _sqlite

from .helpers import TASK, create, engine_on, outputs, query, task_dir, write_result

pytestmark = pytest.mark.anyio


async def test_more_parts_than_max_subtasks_is_refused_and_forgotten(work_dir: Path) -> None:
    parts = [Part(params={"n": n}) for n in range(5)]
    async with engine_on(work_dir) as engine:
        with pytest.raises(InvalidTask, match=rf"'{TASK}'.*max_subtasks_count=4"):
            await create(engine, work_dir, parts, max_subtasks=4)
        assert query(work_dir, "SELECT count(*) FROM parts") == [(0,)]
        # The id is free again; exactly max_subtasks parts is fine.
        await create(engine, work_dir, parts, max_subtasks=5)
        assert await engine.has_pending_subtasks(TASK)


async def test_a_generator_over_max_subtasks_is_not_consumed_further(work_dir: Path) -> None:
    consumed = []

    async def endless() -> AsyncIterator[Part]:
        n = 0
        while True:
            consumed.append(n)
            yield Part(params={"n": n})
            n += 1

    folder = task_dir(work_dir)
    async with engine_on(work_dir) as engine:
        with pytest.raises(InvalidTask, match="max_subtasks_count=10"):
            await engine.create_task(TaskContext(TASK, {}, folder, 10), endless())
    assert len(consumed) == 11


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([Part(name="x"), Part(name="x")], r"two parts are named 'x'"),
        ([Part(), Part(name="0")], r"two parts are named '0'"),
        ([Part(name="a", depends_on=["b"]), Part(name="b")], r"'a' depends on 'b'"),
        ([Part(name="a", depends_on=["a"])], r"'a' depends on 'a'"),
        ([Part(name="a", depends_on=["ghost"])], r"'a' depends on 'ghost'"),
        ([Part(name="a", resources=["missing.txt"])], r"'a'.*'missing.txt'.*task_inputs"),
        ([Part(name="a", resources=["../etc/passwd"])], r"'a'.*resource.*path separator"),
        ([Part(name="a/b")], r"name of part 0.*path separator"),
        ([Part(name="a", params={"x": object()})], r"'a'.*not a JSON object"),
        ([Part(name="a", resources="in.txt")], r"'a': resources must be a list"),
        ([Part(name="a", depends_on="b")], r"'a': depends_on must be a list"),
        ([], r"no parts"),
    ],
)
async def test_invalid_parts_are_refused_naming_them(
    work_dir: Path, parts: list[Part], message: str
) -> None:
    async with engine_on(work_dir) as engine:
        with pytest.raises(InvalidTask, match=message) as error:
            await create(engine, work_dir, parts)
        assert repr(TASK) in str(error.value)
        assert query(work_dir, "SELECT count(*) FROM tasks") == [(0,)]


async def test_a_failing_split_handler_leaves_nothing(work_dir: Path) -> None:
    async def failing() -> AsyncIterator[Part]:
        yield Part()
        raise RuntimeError("split failed")

    folder = task_dir(work_dir)
    async with engine_on(work_dir) as engine:
        with pytest.raises(RuntimeError, match="split failed"):
            await engine.create_task(TaskContext(TASK, {}, folder, 0), failing())
        assert query(work_dir, "SELECT count(*) FROM parts") == [(0,)]
        with pytest.raises(Exception, match=repr(TASK)):
            await engine.has_pending_subtasks(TASK)


async def test_parts_across_batches_keep_order_and_dependencies(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite, "CREATE_BATCH", 3)
    (task_dir(work_dir) / TASK_INPUTS_DIR / "in.txt").write_text("in")
    parts = [Part(params={"n": n}, name=f"p{n}", resources=["in.txt"]) for n in range(7)]
    parts.append(Part({"n": 7}, ["in.txt"], name="last", depends_on=["p5", "p0"]))
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, parts)
        seen = []
        for n in range(7):
            handed = await engine.next_subtask(TASK, f"s{n}", f"node{n}")
            assert handed is not None
            seen.append(handed.params["n"])
            write_result(work_dir, f"s{n}", f"r{n}")
            await engine.verify(TASK, f"s{n}")
        assert seen == list(range(7))
        last = await engine.next_subtask(TASK, "s7", "node7")
        assert last is not None
        assert last.resources == ["in.txt", "p0-result.txt", "p5-result.txt"]


async def test_state_survives_a_restart(work_dir: Path) -> None:
    parts = [Part(params={"n": n}) for n in range(4)]
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, parts)
        await engine.next_subtask(TASK, "s0", "n0")
        await engine.next_subtask(TASK, "s1", "n1")
        write_result(work_dir, "s0", "zero")
        await engine.verify(TASK, "s0")
        await engine.next_subtask(TASK, "s2", "n2")
        write_result(work_dir, "s2", "")
        await engine.verify(TASK, "s2")  # a failure
    async with engine_on(work_dir, Hooks(max_retries=0)) as engine:
        # s1 is still out (not handed again), s0 is done, the one failure is counted.
        assert not await engine.has_pending_subtasks(TASK)
    async with engine_on(work_dir) as engine:
        # The ready parts first; then s1, which its node may never have received, is
        # handed out again as a backup copy; then nothing.
        handed = [await engine.next_subtask(TASK, f"r{n}", f"m{n}") for n in range(4)]
        assert [h.params if h else None for h in handed] == [{"n": 2}, {"n": 3}, {"n": 1}, None]
        # s1's result comes after all: the first verified of the two wins.
        write_result(work_dir, "s1", "one")
        assert (await engine.verify(TASK, "s1")).result is VerifyResult.SUCCESS
        write_result(work_dir, "r2", "one again")
        late = await engine.verify(TASK, "r2")
        assert late.result is VerifyResult.SUCCESS and "not used" in late.reason


async def test_a_task_half_created_at_a_crash_is_forgotten(work_dir: Path) -> None:
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, [Part(), Part()])
    # What a crash in the middle of CreateTask leaves behind.
    db = _db.Database(work_dir / _db.DB_NAME)
    db.run(lambda conn: conn.execute("UPDATE tasks SET state = 'creating'"))
    db.close()
    async with engine_on(work_dir) as engine:
        assert query(work_dir, "SELECT count(*) FROM parts") == [(0,)]
        await create(engine, work_dir, [Part()])  # CreateTask may come again


async def test_a_merge_interrupted_by_a_crash_runs_at_the_next_start(work_dir: Path) -> None:
    async def broken_merge(task: MergeContext) -> None:
        (task.outputs_dir / "partial.txt").write_text("half")
        raise RuntimeError("killed mid-merge")

    async with engine_on(work_dir, Hooks(merge=broken_merge)) as engine:
        await create(engine, work_dir, [Part(name="a"), Part(name="b")])
        for n in range(2):
            await engine.next_subtask(TASK, f"s{n}", f"n{n}")
            write_result(work_dir, f"s{n}", f"r{n}", name=f"{n}.txt")
        await engine.verify(TASK, "s0")
        with pytest.raises(RuntimeError, match="killed mid-merge"):
            await engine.verify(TASK, "s1")
    assert query(work_dir, "SELECT state FROM tasks") == [("merging",)]
    async with engine_on(work_dir) as engine:
        assert not await engine.has_pending_subtasks(TASK)  # waits for the merge
        assert outputs(work_dir) == {"0.txt": "r0", "1.txt": "r1"}
        assert query(work_dir, "SELECT state FROM tasks") == [("finished",)]


async def test_errors_of_the_caller_come_out_unwrapped(work_dir: Path) -> None:
    with pytest.raises(KeyError):
        async with engine_on(work_dir):
            raise KeyError("caller")


async def test_database_and_file_work_never_runs_on_the_event_loop_thread(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.current_thread()
    on_loop: list[str] = []

    def watch(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is loop_thread:
                on_loop.append(name)
            return func(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(_db.Database, "run", watch("Database.run", _db.Database.run))
    for name in ("list_inputs", "result_file", "default_verdict", "place_resources"):
        monkeypatch.setattr(_files, name, watch(name, getattr(_files, name)))
    monkeypatch.setattr(_files, "merge_results", watch("merge_results", _files.merge_results))
    (task_dir(work_dir) / TASK_INPUTS_DIR / "in.txt").write_text("in")
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, [Part(resources=["in.txt"]), Part(depends_on=["0"])])
        for n in range(2):
            await engine.has_pending_subtasks(TASK)
            await engine.next_subtask(TASK, f"s{n}", "node")
            write_result(work_dir, f"s{n}", "x")
            await engine.verify(TASK, f"s{n}")
        assert outputs(work_dir) == {"0-result.txt": "x", "1-result.txt": "x"}
    assert on_loop == []


async def _merge_two(engine: Engine, work_dir: Path) -> dict[str, Path]:
    # Two parts computed and verified: the second Verify merges. Their result files.
    await create(engine, work_dir, [Part(name="a"), Part(name="b")])
    results = {}
    for n, name in enumerate("ab"):
        await engine.next_subtask(TASK, f"s{n}", f"n{n}")
        results[f"{name}-result.txt"] = write_result(work_dir, f"s{n}", f"r{n}")
        await engine.verify(TASK, f"s{n}")
    return results


async def test_the_default_merge_links_the_results_into_task_outputs(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copied: list[Any] = []
    monkeypatch.setattr(shutil, "copyfile", lambda *args: copied.append(args))
    async with engine_on(work_dir) as engine:
        results = await _merge_two(engine, work_dir)
    # Each output is its result's file (a hard link): no byte copied, no new file.
    for name, result in results.items():
        assert (work_dir / TASK / "task_outputs" / name).samefile(result), name
    assert copied == []
    assert outputs(work_dir) == {"a-result.txt": "r0", "b-result.txt": "r1"}


async def test_without_links_the_default_merge_copies_outside_task_outputs(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(source: Any, target: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    written: list[Path] = []
    copy = shutil.copyfile

    def recording_copy(source: Any, target: Any) -> Any:
        written.append(Path(target))
        return copy(source, target)

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(shutil, "copyfile", recording_copy)
    async with engine_on(work_dir) as engine:
        results = await _merge_two(engine, work_dir)
    # Files are written elsewhere and renamed in: task_outputs never shows half a file.
    assert len(written) == 2
    assert all(path.parent != work_dir / TASK / "task_outputs" for path in written)
    assert outputs(work_dir) == {"a-result.txt": "r0", "b-result.txt": "r1"}
    for name, result in results.items():
        assert not (work_dir / TASK / "task_outputs" / name).samefile(result), name
