"""The database thread: one per Database, work in order, never undone by a cancellation;
and how many trips to it each RPC makes (each trip costs more CPU than a cycle's SQL)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from golem_apps import Part, Verdict, VerifyContext, VerifyResult
from golem_apps.engine import Hooks, _db

from .helpers import TASK, create, engine_on, query, write_result

pytestmark = pytest.mark.anyio


def insert_task(
    task_id: str, entered: threading.Event, gate: threading.Event, log: list[str]
) -> Callable[..., str]:
    """A transaction that records a task, sets ``entered``, waits for ``gate``, commits."""

    def work(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO tasks (id, state, params) VALUES (?, 'active', '{}')", (task_id,))
        entered.set()
        assert gate.wait(10)
        log.append("work done")
        return task_id

    return work


async def wait_for(flag: threading.Event) -> None:
    """Until the database thread sets ``flag`` (polled: the loop must not block)."""
    with anyio.fail_after(10):
        while not flag.is_set():
            await anyio.sleep(0.001)


async def test_an_anyio_cancellation_comes_after_the_transaction_and_its_result(
    work_dir: Path, db: _db.Database
) -> None:
    gate, entered = threading.Event(), threading.Event()
    log: list[str] = []
    work = insert_task("t", entered, gate, log)

    async def caller(scope: anyio.CancelScope) -> None:
        with scope:
            log.append(await db.call(work))  # returns although cancelled meanwhile
            await anyio.lowlevel.checkpoint()
            log.append("not reached")

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as group:
        group.start_soon(caller, scope)
        await wait_for(entered)
        scope.cancel()
        for _ in range(20):  # the caller stays blocked on the running transaction
            await anyio.lowlevel.checkpoint()
        assert log == []
        gate.set()
    assert scope.cancelled_caught
    assert log == ["work done", "t"]
    assert query(work_dir, "SELECT id FROM tasks") == [("t",)]


async def test_a_native_cancellation_is_raised_once_the_transaction_has_committed(
    work_dir: Path, db: _db.Database
) -> None:
    # grpclib cancels a handler's task with Task.cancel() when its client goes away.
    gate, entered = threading.Event(), threading.Event()
    log: list[str] = []
    work = insert_task("t", entered, gate, log)

    async def caller() -> None:
        try:
            await db.call(work)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
        log.append("not reached")

    task = asyncio.get_running_loop().create_task(caller())
    await wait_for(entered)
    for _ in range(3):  # cancelled again and again: still waits for the work
        task.cancel()
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        assert not task.done()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["work done", "cancelled"]
    assert query(work_dir, "SELECT id FROM tasks") == [("t",)]


async def test_a_caller_already_cancelled_starts_nothing(db: _db.Database) -> None:
    ran: list[str] = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        await db.in_thread(ran.append, "ran")
    assert scope.cancelled_caught
    assert ran == []


async def test_errors_come_back_and_roll_the_transaction_back(
    work_dir: Path, db: _db.Database
) -> None:
    def failing(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO tasks (id, state, params) VALUES ('t', 'active', '{}')")
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await db.call(failing)
    assert query(work_dir, "SELECT id FROM tasks") == []


async def test_work_runs_in_order_on_one_thread_off_the_loop(db: _db.Database) -> None:
    seen: list[tuple[int, int]] = []

    def note(k: int) -> None:
        seen.append((k, threading.get_ident()))

    async with anyio.create_task_group() as group:
        for k in range(50):
            group.start_soon(db.in_thread, note, k)
    assert [k for k, _ in seen] == list(range(50))
    threads = {ident for _, ident in seen}
    assert len(threads) == 1 and threading.get_ident() not in threads


async def test_a_closed_database_refuses_work(work_dir: Path) -> None:
    database = _db.Database(work_dir / _db.DB_NAME)
    await anyio.to_thread.run_sync(database.close)
    with pytest.raises(RuntimeError, match="closed"):
        await database.in_thread(print)
    database.close()  # twice: nothing happens


# -- trips per RPC ---------------------------------------------------------------------


class Trips:
    """Counts the current task's trips to other threads: the database thread and anyio's."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kinds: list[str] = []
        self.task: asyncio.Task[Any] | None = None
        in_thread, run_sync = _db.Database.in_thread, anyio.to_thread.run_sync

        async def counted_in_thread(db: _db.Database, func: Any, *args: Any) -> Any:
            self._count("db")
            return await in_thread(db, func, *args)

        async def counted_run_sync(func: Any, *args: Any, **kwargs: Any) -> Any:
            self._count("anyio")
            return await run_sync(func, *args, **kwargs)

        monkeypatch.setattr(_db.Database, "in_thread", counted_in_thread)
        monkeypatch.setattr(anyio.to_thread, "run_sync", counted_run_sync)

    def _count(self, kind: str) -> None:
        # Only the test's own calls: not the status writer's.
        if self.task is not None and asyncio.current_task() is self.task:
            self.kinds.append(kind)

    def start(self) -> None:
        self.kinds = []
        self.task = asyncio.current_task()


async def test_a_default_cycle_makes_two_trips(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = Trips(monkeypatch)
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, [Part(params={"n": n}) for n in range(3)])
        for k in range(2):
            trips.start()
            assert await engine.has_pending_subtasks(TASK)
            assert trips.kinds == []  # answered by the task's latest transaction
            assert await engine.next_subtask(TASK, f"s{k}", f"node{k}") is not None
            assert trips.kinds == ["db"]
            write_result(work_dir, f"s{k}", "x")
            trips.start()
            assert (await engine.verify(TASK, f"s{k}")).result is VerifyResult.SUCCESS
            assert trips.kinds == ["db"]
        # A failure (an empty result) takes one trip too.
        await engine.next_subtask(TASK, "s2", "node2")
        write_result(work_dir, "s2", "")
        trips.start()
        assert (await engine.verify(TASK, "s2")).result is VerifyResult.FAILURE
        assert trips.kinds == ["db"]
        assert await engine.has_pending_subtasks(TASK)
        assert trips.kinds == ["db"]


async def test_a_verify_hook_costs_one_trip_before_and_one_after(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def hook(result: VerifyContext) -> Verdict:
        return Verdict(VerifyResult.SUCCESS)

    trips = Trips(monkeypatch)
    async with engine_on(work_dir, Hooks(verify=hook)) as engine:
        await create(engine, work_dir, [Part(), Part()])
        await engine.next_subtask(TASK, "s1", "node")
        write_result(work_dir, "s1", "x")
        trips.start()
        assert (await engine.verify(TASK, "s1")).result is VerifyResult.SUCCESS
        assert trips.kinds == ["db", "db"]
        await engine.next_subtask(TASK, "s2", "node")
        trips.start()  # no result file: failed without calling the hook, in one trip
        assert (await engine.verify(TASK, "s2")).result is VerifyResult.FAILURE
        assert trips.kinds == ["db"]


async def test_every_transaction_of_a_cycle_runs_on_the_database_thread(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[str] = set()
    run = _db.Database.run

    def watched(db: _db.Database, func: Any, *args: Any) -> Any:
        threads.add(threading.current_thread().name)
        return run(db, func, *args)

    monkeypatch.setattr(_db.Database, "run", watched)
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, [Part(), Part(depends_on=["0"])])
        for k in range(2):
            await engine.has_pending_subtasks(TASK)
            await engine.next_subtask(TASK, f"s{k}", "node")
            write_result(work_dir, f"s{k}", "x")
            await engine.verify(TASK, f"s{k}")
        await engine.task_status(TASK)
    assert threads == {"golem_apps-db"}
