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

from ._schema import prepare

T = TypeVar("T")

#: The database file, in the requestor's work dir (never inside a task's folders).
DB_NAME = ".golem_apps_engine.sqlite3"


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
        prepare(self._conn)
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
