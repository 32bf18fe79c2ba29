"""The engine's SQLite database: one connection, served by one dedicated thread."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio
from anyio.lowlevel import checkpoint_if_cancelled

T = TypeVar("T")

#: The database file, in the requestor's work dir (never inside a task's folders).
DB_NAME = ".golem_apps_engine.sqlite3"

# Part status: ready (may be handed out), blocked (a dependency is not done),
# computing (a live subtask holds it), done (a subtask succeeded; `subtask` names it).
# Subtask state: computing, standby (a hand-out a restart may have lost, whose part was
# handed out again as a backup copy: the first of the two verified wins), awaiting
# (redundant tasks: a result waiting for the vote), success, failure, superseded (the
# other copy was verified first), aborted, discarded. ``lost`` is 1 on a subtask that
# was computing when the requestor (re)started: the node may never have received it.
# ``copy_of`` names the subtask a backup copy stands in for. ``verdict`` and ``reason``
# hold the verdict answered (again) to every Verify of a decided subtask; ``told`` is
# kept for older databases and no longer read.
# Redundant tasks: ``parts.wanted`` counts the subtasks still to hand out for a part.
# ``nodes`` counts each node's failed verifications per task and holds its ban.
# Task state: creating (parts still being recorded; removed on restart),
# active, merging (every part done, merge running or interrupted), finished, aborted.
SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    total INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    redundancy INTEGER NOT NULL DEFAULT 1,
    ban_after INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS parts (
    task TEXT NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    params TEXT NOT NULL,
    resources TEXT NOT NULL,
    status TEXT NOT NULL,
    waiting INTEGER NOT NULL,
    subtask TEXT,
    wanted INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (task, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deps (
    task TEXT NOT NULL,
    part INTEGER NOT NULL,
    dep INTEGER NOT NULL,
    PRIMARY KEY (task, part, dep)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subtasks (
    task TEXT NOT NULL,
    id TEXT NOT NULL,
    part INTEGER NOT NULL,
    node TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    reason TEXT,
    told INTEGER NOT NULL DEFAULT 1,
    lost INTEGER NOT NULL DEFAULT 0,
    copy_of TEXT,
    verdict INTEGER,
    PRIMARY KEY (task, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nodes (
    task TEXT NOT NULL,
    node TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    banned TEXT,
    PRIMARY KEY (task, node)
) WITHOUT ROWID;
"""

#: Indexes, created once the columns they cover exist (after the migrations).
INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS parts_by_name ON parts (task, name);
CREATE INDEX IF NOT EXISTS parts_by_status ON parts (task, status, idx);
CREATE INDEX IF NOT EXISTS deps_by_dep ON deps (task, dep);
DROP INDEX IF EXISTS live_by_node;
CREATE INDEX IF NOT EXISTS current_by_node ON subtasks (task, node)
    WHERE state = 'computing' AND lost = 0;
CREATE INDEX IF NOT EXISTS lost_by_part ON subtasks (task, part)
    WHERE state = 'computing' AND lost = 1;
CREATE INDEX IF NOT EXISTS awaiting_by_node ON subtasks (task, node) WHERE state = 'awaiting';
CREATE INDEX IF NOT EXISTS subtasks_by_part ON subtasks (task, part);
"""

#: Columns added after the first release: (table, column, definition), added to older databases.
MIGRATIONS = (
    ("tasks", "redundancy", "INTEGER NOT NULL DEFAULT 1"),
    ("tasks", "ban_after", "INTEGER NOT NULL DEFAULT 0"),
    ("parts", "wanted", "INTEGER NOT NULL DEFAULT 1"),
    ("subtasks", "reason", "TEXT"),
    ("subtasks", "told", "INTEGER NOT NULL DEFAULT 1"),
    ("subtasks", "lost", "INTEGER NOT NULL DEFAULT 0"),
    ("subtasks", "copy_of", "TEXT"),
    ("subtasks", "verdict", "INTEGER"),
)


def _migrate(conn: sqlite3.Connection) -> None:
    # A database made by an older golem_apps lacks the newer columns: add them.
    for table, column, definition in MIGRATIONS:
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


class _Call(Generic[T]):
    """One piece of work for the database thread, and how it ended."""

    __slots__ = ("args", "error", "finished", "func", "loop", "result", "waiter")

    def __init__(
        self, func: Callable[..., T], args: tuple[Any, ...], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.func = func
        self.args = args
        self.loop = loop
        self.waiter: asyncio.Future[None] = loop.create_future()
        self.finished = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        # In the database thread.
        try:
            self.result = self.func(*self.args)
        except BaseException as exc:  # handed to the caller, re-raised there
            self.error = exc
        # A closed loop (RuntimeError): nobody awaits the result any more.
        with suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        # In the event loop thread. ``waiter`` may have been cancelled (and replaced).
        self.finished = True
        if not self.waiter.done():
            self.waiter.set_result(None)

    def outcome(self) -> T:
        if self.error is not None:
            error, self.error = self.error, None  # no reference cycle through the traceback
            raise error
        return self.result  # type: ignore[return-value]


class Database:
    """A single SQLite connection in WAL mode, served by one dedicated thread.

    Every :meth:`call` is one transaction: committed when the function
    returns, rolled back when it raises. The engine's calls run one at a time,
    in the order they were made, on the database's own thread (not a pool:
    no two threads wait on the connection, and one trip to the thread costs
    the least).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # Serializes run(): the database thread's and direct callers' (tests, tools).
        self._lock = threading.Lock()
        # Guards _closed and the queue's end: no call is queued after the last one.
        self._state_lock = threading.Lock()
        self._closed = False
        # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives the process being killed (the
        # kernel holds the written pages); only a power loss may drop the last ones.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA cache_size=-16000")  # 16 MB: bounded memory at any size
        self._conn.executescript(SCHEMA)
        _migrate(self._conn)
        self._conn.executescript(INDEXES)
        self._calls: queue.SimpleQueue[_Call[Any] | None] = queue.SimpleQueue()
        # A daemon: a process that exits without close() is not held up by it
        # (an unfinished transaction is rolled back at the next open, as after a crash).
        self._thread = threading.Thread(target=self._serve, name="golem_apps-db", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            call.run()

    def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(connection, *args)`` in one transaction, in the calling thread."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = func(self._conn, *args)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        """Like :meth:`run`, on the database thread: the event loop never waits on SQLite."""
        return await self.in_thread(self.run, func, *args)

    async def in_thread(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` on the database thread (blocking work: transactions, files).

        Once submitted the work always runs to its end, and a cancellation of
        the caller is delivered only after it: a transaction that committed is
        never reported as not done. Like ``anyio.to_thread.run_sync``, an anyio
        cancellation reaches the caller at its next checkpoint, after the
        result; a native ``Task.cancel()`` (grpclib's, when a client goes away)
        is raised here once the work has ended.
        """
        # Like anyio's: a caller already cancelled starts nothing (cheap when not cancelled).
        await checkpoint_if_cancelled()
        call = _Call(func, args, asyncio.get_running_loop())
        with self._state_lock:  # never held for long: the loop does not wait on it
            if self._closed:
                raise RuntimeError(f"the database {self.path} is closed")
            self._calls.put(call)
        # The shield holds off anyio's cancellations until the work has ended.
        with anyio.CancelScope(shield=True):
            try:
                await call.waiter
            except asyncio.CancelledError:
                await _wait_out(call)
                raise
        return call.outcome()

    def close(self) -> None:
        """Stop the thread once the work submitted is done, then close the connection.

        Blocking: call it outside the event loop (a worker thread, or synchronous code).
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("Database.close() called from the database thread")
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            self._calls.put(None)  # after every call submitted before
        self._thread.join()
        with self._lock:
            self._conn.close()


async def _wait_out(call: _Call[Any]) -> None:
    # A native Task.cancel() cancelled the waiter: wait for the work to end (on
    # fresh waiters, through further native cancellations) before it is raised.
    while not call.finished:
        call.waiter = call.loop.create_future()
        with suppress(asyncio.CancelledError):
            await call.waiter
