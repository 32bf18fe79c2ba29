"""HasPendingSubtasks answers from the task's latest transaction: never other than the database.

The engine keeps, per task, the has-pending answer its latest transaction
computed, written on the database thread only. Random sequences of RPCs
(some run concurrently, with restarts, votes, bans, aborts) check two things:
after every group of work the database thread commits, the kept answer is
absent or the database's own; after every batch of RPCs, HasPendingSubtasks (kept)
answers what a fresh read of the database answers, or raises the same error.
"""

from __future__ import annotations

import sqlite3
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golem_apps import EngineError
from golem_apps.constants import SUBTASK_OUTPUTS_DIR
from golem_apps.engine import Hooks, _db, _handouts, open_engine
from golem_apps.engine._sqlite import SqliteEngine

from .helpers import DIAMOND, TASK, create, verdict_from_content, write_result

NODES = 3
PARTS = DIAMOND

subtask_ref = st.integers(0, 5)
contents = st.sampled_from(["S", "S", "S", "F", "I", "A", ""])
operation = st.one_of(
    st.tuples(st.just("next"), st.integers(0, NODES - 1)),
    st.tuples(st.just("next"), st.integers(0, NODES - 1)),
    st.tuples(st.just("verify"), subtask_ref, contents),
    st.tuples(st.just("verify"), st.just(0), contents),
    st.tuples(st.just("verify_missing"), subtask_ref),
    st.tuples(st.just("discard"), st.lists(subtask_ref, max_size=3)),
    st.tuples(st.just("abort_subtask"), subtask_ref),
    st.tuples(st.just("pending")),
    st.tuples(st.just("status")),
    st.tuples(st.just("restart")),
    st.tuples(st.just("abort_task"), st.integers(0, 19)),  # rare: it ends the task
)
# Each batch's RPCs run concurrently; a batch of one is a plain sequence.
batches = st.lists(st.lists(operation, min_size=1, max_size=4), min_size=5, max_size=25)
configs = st.fixed_dictionaries(
    {
        "redundancy": st.sampled_from([1, 1, 2]),
        "ban_after": st.sampled_from([0, 2]),
        "max_retries": st.sampled_from([0, 2, 5]),
        "hook": st.booleans(),
    }
)


def uncached(conn: sqlite3.Connection, max_retries: int) -> bool | str:
    """The database's answer, or the name of the error HasPendingSubtasks raises."""
    try:
        return _handouts.has_pending(conn, TASK, max_retries)
    except EngineError as exc:
        return type(exc).__name__


class Watch:
    """Checks the kept answer after each group the database thread commits."""

    def __init__(self, max_retries: int) -> None:
        self.max_retries = max_retries
        self.engine: SqliteEngine | None = None
        self.checks = 0
        self.errors: list[str] = []

    def after_group(self) -> None:
        # On the database thread, between two groups of work: the state is still.
        engine = self.engine
        if engine is None or engine._db._closed:
            return
        kept = engine._changes.kept.get(TASK)
        truth = engine._db.run(uncached, self.max_retries)
        self.checks += 1
        if kept is not None and kept != truth:
            self.errors.append(f"kept {kept!r}, database {truth!r}")


async def run(work_dir: Path, config: dict[str, Any], ops: list[list[tuple[Any, ...]]]) -> None:
    verify = verdict_from_content if config["hook"] else None
    hooks = Hooks(
        verify=verify,
        max_retries=config["max_retries"],
        redundancy=config["redundancy"],
        ban_after=config["ban_after"],
    )
    watch = Watch(config["max_retries"])
    original = _db.Database._finish_group

    def watched(db: _db.Database) -> None:
        original(db)
        watch.after_group()

    issued: list[str] = []

    def pick(ref: int) -> str:
        return issued[-1 - ref % len(issued)] if issued else "ghost"

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_db.Database, "_finish_group", watched)
        async with AsyncExitStack() as stack:

            async def start() -> SqliteEngine:
                engine = await stack.enter_async_context(open_engine(work_dir, hooks))
                watch.engine = cast(SqliteEngine, engine)
                return watch.engine

            engine = await start()
            await create(engine, work_dir, PARTS)

            async def do(op: tuple[Any, ...]) -> None:
                kind = op[0]
                try:
                    if kind == "next":
                        subtask_id = f"s{len(issued)}"
                        issued.append(subtask_id)
                        await engine.next_subtask(TASK, subtask_id, f"node{op[1]}")
                    elif kind == "verify":
                        subtask_id = pick(op[1])
                        folder = work_dir / TASK / SUBTASK_OUTPUTS_DIR / subtask_id
                        if not folder.exists():
                            write_result(work_dir, subtask_id, op[2] + subtask_id)
                        await engine.verify(TASK, subtask_id)
                    elif kind == "verify_missing":
                        subtask_id = pick(op[1])
                        await engine.verify(TASK, subtask_id)
                    elif kind == "discard":
                        await engine.discard_subtasks(TASK, [pick(ref) for ref in op[1]])
                    elif kind == "abort_subtask":
                        await engine.abort_subtask(TASK, pick(op[1]))
                    elif kind == "pending":
                        await engine.has_pending_subtasks(TASK)
                    elif kind == "status":
                        await engine.task_status(TASK)
                    elif kind == "abort_task" and op[1] == 0:
                        await engine.abort_task(TASK)
                except EngineError:
                    pass  # a call that does not fit the state (or a race): refused

            for batch in ops:
                async with anyio.create_task_group() as group:
                    for op in batch:
                        if op[0] != "restart":
                            group.start_soon(do, op)
                if any(op[0] == "restart" for op in batch):
                    await stack.aclose()
                    engine = await start()
                conn = sqlite3.connect(f"file:{work_dir / _db.DB_NAME}?mode=ro", uri=True)
                try:
                    truth = uncached(conn, config["max_retries"])
                finally:
                    conn.close()
                try:
                    answer: bool | str = await engine.has_pending_subtasks(TASK)
                except EngineError as exc:
                    answer = type(exc).__name__
                assert answer == truth
    assert watch.errors == []
    assert watch.checks > 0


@pytest.mark.slow
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(configs, batches)
def test_the_kept_has_pending_answer_is_the_databases(
    config: dict[str, Any], ops: list[list[tuple[Any, ...]]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(run, Path(tmp), config, ops, backend="asyncio")
