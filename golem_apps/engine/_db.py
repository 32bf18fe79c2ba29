"""The engine's SQLite database: one connection, one lock, every call in a worker thread."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from anyio import to_thread

T = TypeVar("T")

#: The database file, in the requestor's work dir (never inside a task's folders).
DB_NAME = ".golem_apps_engine.sqlite3"

# Part status: ready (may be handed out), blocked (a dependency is not done),
# computing (a live subtask holds it), done (a subtask succeeded; `subtask` names it).
# Subtask state: computing, success, failure, aborted, discarded.
# Task state: creating (parts still being recorded; removed on restart),
# active, merging (every part done, merge running or interrupted), finished, aborted.
SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    total INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0
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
    PRIMARY KEY (task, idx)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS parts_by_name ON parts (task, name);
CREATE INDEX IF NOT EXISTS parts_by_status ON parts (task, status, idx);
CREATE TABLE IF NOT EXISTS deps (
    task TEXT NOT NULL,
    part INTEGER NOT NULL,
    dep INTEGER NOT NULL,
    PRIMARY KEY (task, part, dep)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deps_by_dep ON deps (task, dep);
CREATE TABLE IF NOT EXISTS subtasks (
    task TEXT NOT NULL,
    id TEXT NOT NULL,
    part INTEGER NOT NULL,
    node TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    PRIMARY KEY (task, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS live_by_node ON subtasks (task, node) WHERE state = 'computing';
"""


class Database:
    """A single SQLite connection in WAL mode, used by one worker thread at a time.

    Every :meth:`call` is one transaction: committed when the function
    returns, rolled back when it raises.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._closed = False
        # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives the process being killed (the
        # kernel holds the written pages); only a power loss may drop the last ones.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA cache_size=-16000")  # 16 MB: bounded memory at any size
        self._conn.executescript(SCHEMA)

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
        """Like :meth:`run`, in a worker thread: the event loop never waits on SQLite."""
        return await to_thread.run_sync(partial(self.run, func, *args))

    def close(self) -> None:
        """Close the connection (waits for a running transaction)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
