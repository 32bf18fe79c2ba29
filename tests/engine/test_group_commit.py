"""Group commit: the calls queued while the database thread works share one transaction
and one COMMIT, each in a savepoint of its own; no caller hears of its work before the
COMMIT that holds it, and a COMMIT that fails undoes every call that wrote in it.

Each test holds the database thread in a first call (a gate) while it queues the
others, so that they form one group.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from golem_apps import Part, TaskStatus, _taskstatus
from golem_apps.engine import _db, _status, _tasks
from golem_apps.engine._sqlite import SqliteEngine

from .helpers import TASK, create, engine_on, query

pytestmark = pytest.mark.anyio


class Insert:
    """A transaction recording a task (then waiting for ``gate``, if given)."""

    def __init__(
        self, task_id: str, gate: threading.Event | None = None, fail: bool = False
    ) -> None:
        self.task_id = task_id
        self.gate = gate
        self.fail = fail
        self.entered = threading.Event()

    def __call__(self, conn: sqlite3.Connection) -> str:
        conn.execute(
            "INSERT INTO tasks (id, state, params) VALUES (?, 'active', '{}')", (self.task_id,)
        )
        if self.gate is not None:
            self.entered.set()
            assert self.gate.wait(10)
        if self.fail:
            raise KeyError(self.task_id)
        return self.task_id


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (the loop must not block on the database thread)."""
    with anyio.fail_after(10):
        while not condition():
            await anyio.sleep(0.001)


def tasks(work_dir: Path) -> list[str]:
    """The committed tasks' ids, as another connection sees them."""
    return [row[0] for row in query(work_dir, "SELECT id FROM tasks ORDER BY id")]


class Group:
    """Calls queued behind a gated first call, and what each answered."""

    def __init__(self, db: _db.Database) -> None:
        self.db = db
        self.gate = threading.Event()
        self.answers: dict[str, Any] = {}

    async def _call(self, name: str, func: Callable[..., Any]) -> None:
        try:
            self.answers[name] = await self.db.call(func)
        except Exception as exc:
            self.answers[name] = exc

    async def start(
        self,
        group: anyio.abc.TaskGroup,
        first: str,
        rest: Mapping[str, Callable[..., Any]],
        first_fails: bool = False,
    ) -> None:
        """Start the gated first call, then queue ``rest`` while it waits."""
        gated = Insert(first, self.gate, first_fails)
        group.start_soon(self._call, first, gated)
        await until(gated.entered.is_set)
        for name, func in rest.items():
            group.start_soon(self._call, name, func)
        await until(lambda: self.db._calls.qsize() == len(rest))


async def test_a_group_commits_once_and_no_caller_hears_of_it_before(
    work_dir: Path, db: _db.Database
) -> None:
    statements: list[str] = []
    db._conn.set_trace_callback(statements.append)  # the thread is idle: nothing races
    group = Group(db)
    last_gate = threading.Event()
    last = Insert("t3", last_gate)
    async with anyio.create_task_group() as tg:
        rest = {"t1": Insert("t1"), "t2": Insert("t2"), "t3": last}
        await group.start(tg, "t0", rest)
        group.gate.set()
        await until(last.entered.is_set)  # t0..t2 are done, the group not committed
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        assert group.answers == {}
        assert tasks(work_dir) == []
        last_gate.set()
    assert group.answers == {"t0": "t0", "t1": "t1", "t2": "t2", "t3": "t3"}
    assert tasks(work_dir) == ["t0", "t1", "t2", "t3"]
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert statements.count("COMMIT") == 1


async def test_an_error_undoes_its_own_call_only(work_dir: Path, db: _db.Database) -> None:
    def failing(conn: sqlite3.Connection) -> None:
        Insert("bad")(conn)
        raise KeyError("boom")

    group = Group(db)
    async with anyio.create_task_group() as tg:
        await group.start(tg, "t0", {"bad": failing, "t2": Insert("t2")})
        group.gate.set()
    assert isinstance(group.answers.pop("bad"), KeyError)
    assert group.answers == {"t0": "t0", "t2": "t2"}
    assert tasks(work_dir) == ["t0", "t2"]


async def test_an_error_of_the_first_call_undoes_it_alone(work_dir: Path, db: _db.Database) -> None:
    group = Group(db)
    async with anyio.create_task_group() as tg:
        await group.start(tg, "t0", {"t1": Insert("t1"), "t2": Insert("t2")}, first_fails=True)
        group.gate.set()
    assert isinstance(group.answers.pop("t0"), KeyError)
    assert group.answers == {"t1": "t1", "t2": "t2"}
    assert tasks(work_dir) == ["t1", "t2"]


async def test_a_failed_commit_undoes_every_call_that_wrote_in_it(
    work_dir: Path, db: _db.Database
) -> None:
    # A deferred foreign key makes the COMMIT itself fail (as a full disk may).
    def schema(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )

    await db.call(schema)
    with db._lock:
        db._conn.execute("PRAGMA foreign_keys = ON")
    hooks: list[str] = []

    def orphan(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO child (p) VALUES (1)")
        db.after_commit(lambda: hooks.append("orphan committed"))
        return "orphan"

    def read_only(conn: sqlite3.Connection) -> int:
        return len(conn.execute("SELECT id FROM tasks").fetchall())

    group = Group(db)
    async with anyio.create_task_group() as tg:
        await group.start(tg, "t0", {"orphan": orphan, "t2": Insert("t2"), "read": read_only})
        group.gate.set()
    assert {name: type(answer) for name, answer in group.answers.items()} == dict.fromkeys(
        group.answers, sqlite3.IntegrityError
    )
    assert set(group.answers) == {"t0", "orphan", "t2", "read"}
    assert hooks == []
    assert tasks(work_dir) == []
    assert await db.call(Insert("t9")) == "t9"  # the next group starts afresh
    assert tasks(work_dir) == ["t9"]


async def test_a_transaction_sqlite_rolled_back_undoes_the_calls_before(
    work_dir: Path, db: _db.Database
) -> None:
    # SQLite rolls the whole transaction back on some errors (SQLITE_FULL, SQLITE_IOERR).
    def disk_full(conn: sqlite3.Connection) -> None:
        Insert("full")(conn)
        conn.execute("ROLLBACK")
        raise sqlite3.OperationalError("database or disk is full")

    group = Group(db)
    async with anyio.create_task_group() as tg:
        await group.start(tg, "t0", {"full": disk_full, "t2": Insert("t2")})
        group.gate.set()
    assert isinstance(group.answers["t0"], sqlite3.OperationalError)
    assert isinstance(group.answers["full"], sqlite3.OperationalError)
    assert group.answers["t2"] == "t2"  # in a new transaction
    assert tasks(work_dir) == ["t2"]


async def test_after_commit_work_runs_in_commit_order_and_never_for_a_rollback(
    db: _db.Database,
) -> None:
    done: list[str] = []

    def noting(name: str, fail: bool = False) -> Callable[..., None]:
        def work(conn: sqlite3.Connection) -> None:
            db.after_commit(lambda: done.append(name))
            if fail:
                raise KeyError(name)

        return work

    group = Group(db)
    async with anyio.create_task_group() as tg:
        rest = {"a": noting("a"), "b": noting("b", fail=True), "c": noting("c")}
        await group.start(tg, "t0", rest)
        group.gate.set()
    assert done == ["a", "c"]
    db.run(noting("direct"))  # a direct caller's own transaction: at its commit
    assert done == ["a", "c", "direct"]
    with pytest.raises(KeyError):
        db.run(noting("undone", fail=True))
    assert done == ["a", "c", "direct"]


async def test_a_group_is_bounded(work_dir: Path, db: _db.Database) -> None:
    statements: list[str] = []
    db._conn.set_trace_callback(statements.append)
    group = Group(db)
    count = 2 * _db.GROUP_LIMIT
    async with anyio.create_task_group() as tg:
        await group.start(tg, "t000", {f"t{k:03d}": Insert(f"t{k:03d}") for k in range(1, count)})
        group.gate.set()
    assert len(tasks(work_dir)) == count
    assert statements.count("COMMIT") == 2


async def test_the_status_file_shows_only_committed_work(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A status write queued behind a hand-out in one group: the file must not show
    # the hand-out before its COMMIT (a crash then would leave the file ahead).
    written: list[tuple[TaskStatus, TaskStatus]] = []
    write = _taskstatus.write_task_status

    def compared(task_dir: Path, status: TaskStatus) -> None:
        conn = sqlite3.connect(f"file:{work_dir / _db.DB_NAME}?mode=ro", uri=True)
        try:
            written.append((status, _tasks.task_status(conn, task_dir.name, 3)))
        finally:
            conn.close()
        write(task_dir, status)

    monkeypatch.setattr(_status, "write_task_status", compared)
    async with engine_on(work_dir) as engine:
        sqlite_engine = cast(SqliteEngine, engine)
        await create(engine, work_dir, [Part(), Part()])
        gate, entered = threading.Event(), threading.Event()

        def hold() -> None:
            entered.set()
            assert gate.wait(10)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sqlite_engine._db.in_thread, hold)
            await until(entered.is_set)
            tg.start_soon(engine.next_subtask, TASK, "s1", "node")
            await until(lambda: sqlite_engine._db._calls.qsize() == 1)
            tg.start_soon(sqlite_engine._status.write_now, TASK)
            await until(lambda: sqlite_engine._db._calls.qsize() == 2)
            gate.set()
    handed_out = [shown for shown, _ in written if shown.parts.get("computing")]
    assert handed_out  # the status write saw the hand-out
    assert all(shown == committed for shown, committed in written)


async def test_has_pending_answers_from_committed_work_only(work_dir: Path) -> None:
    # NextSubtask takes the only part in a group still open: HasPendingSubtasks (kept,
    # no trip) must not answer from that uncommitted hand-out.
    async with engine_on(work_dir) as engine:
        sqlite_engine = cast(SqliteEngine, engine)
        await create(engine, work_dir, [Part()])
        assert await engine.has_pending_subtasks(TASK)
        gates = [threading.Event(), threading.Event()]
        entered = [threading.Event(), threading.Event()]

        def hold(k: int) -> None:
            entered[k].set()
            assert gates[k].wait(10)

        handed: list[object] = []

        async def next_subtask() -> None:
            handed.append(await engine.next_subtask(TASK, "s1", "node"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(sqlite_engine._db.in_thread, hold, 0)
            await until(entered[0].is_set)
            tg.start_soon(next_subtask)
            await until(lambda: sqlite_engine._db._calls.qsize() == 1)
            tg.start_soon(sqlite_engine._db.in_thread, hold, 1)
            await until(lambda: sqlite_engine._db._calls.qsize() == 2)
            gates[0].set()
            await until(entered[1].is_set)  # the hand-out is done, not committed
            assert handed == []
            assert await engine.has_pending_subtasks(TASK)
            gates[1].set()
        assert handed != [None]
        assert not await engine.has_pending_subtasks(TASK)
