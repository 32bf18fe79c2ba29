"""The engine's SQLite database: one connection, served by one dedicated thread.

The thread commits in groups: the calls queued while it works run in one
transaction (each in a savepoint of its own, so that one call's error undoes
that call alone) and one COMMIT makes them all durable; their callers are
woken only after it. A cycle's calls share most of the pages they write (the
task's row, the counters, the index pages of the parts handed out), so a
group writes each page once, and the event loop is woken once per group.
"""

from __future__ import annotations

import asyncio
import logging
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

log = logging.getLogger("golem_apps.engine")

#: The database file, in the requestor's work dir (never inside a task's folders).
DB_NAME = ".golem_apps_engine.sqlite3"
#: Calls committed together at most: the first caller of a group waits for the group.
GROUP_LIMIT = 32


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

    def undone(self, error: BaseException) -> None:
        # In the database thread: the group's transaction was rolled back after this
        # call's work: nothing of it is stored, and its caller hears why.
        self.result, self.error = None, error

    def settle(self) -> None:
        # In the event loop thread. ``waiter`` may have been cancelled (and replaced).
        self.finished = True
        if not self.waiter.done():
            self.waiter.set_result(None)

    def outcome(self) -> T:
        if self.error is not None:
            error, self.error = self.error, None  # no reference cycle through the traceback
            raise error
        return self.result  # type: ignore[return-value]


def _settle(calls: list[_Call[Any]]) -> None:
    for call in calls:
        call.settle()


class Database:
    """A single SQLite connection in WAL mode, served by one dedicated thread.

    Every :meth:`run` is one transaction: rolled back when its function
    raises, else committed before its result reaches anyone. The engine's
    calls run one at a time, in the order they were made, on the database's
    own thread (not a pool: no two threads wait on the connection, and one
    trip to the thread costs the least); that thread commits the calls queued
    together in one group (see the module's docstring), a direct caller of
    :meth:`run` (tests, tools) commits its transaction alone.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # Serializes transactions: the database thread's groups and direct callers'.
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
        # What runs once the open transaction has committed (dropped if it is rolled back).
        self._after_commit: list[Callable[[], None]] = []
        # The database thread's group: its running call, and the calls that wrote in
        # the group's open transaction (None: no transaction open).
        self._current: _Call[Any] | None = None
        self._writers: list[_Call[Any]] | None = None
        self._calls: queue.SimpleQueue[_Call[Any] | None] = queue.SimpleQueue()
        # A daemon: a process that exits without close() is not held up by it
        # (an unfinished transaction is rolled back at the next open, as after a crash).
        self._thread = threading.Thread(target=self._serve, name="golem_apps-db", daemon=True)
        self._thread.start()

    # -- the database thread ---------------------------------------------------------

    def _serve(self) -> None:
        calls = self._calls
        running = True
        while running and (call := calls.get()) is not None:
            group = [call]
            self._work(call)
            while len(group) < GROUP_LIMIT:
                try:
                    call = calls.get_nowait()
                except queue.Empty:
                    break
                if call is None:
                    running = False
                    break
                group.append(call)
                self._work(call)
            self._finish_group()
            self._wake(group)

    def _work(self, call: _Call[Any]) -> None:
        self._current = call
        try:
            call.run()
        finally:
            self._current = None

    def flush(self) -> None:
        """On the database thread: commit the transaction the group holds open now (its
        callers still hear of it at the group's end). Elsewhere: nothing to do."""
        if threading.current_thread() is self._thread:
            self._finish_group()

    def _finish_group(self) -> None:
        """Commit the group's transaction (if one is open), then run its after-commit work.

        A failed COMMIT undoes every call that ran a transaction in it: they answer its error.
        """
        writers = self._writers
        if writers is None:
            return
        self._writers = None
        hooks, self._after_commit = self._after_commit, []
        try:
            self._conn.execute("COMMIT")
        except BaseException as exc:
            hooks = []
            with suppress(sqlite3.Error):
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            for call in writers:
                call.undone(exc)
        try:
            _run_hooks(hooks)  # in commit order: before the next transaction
        finally:
            self._lock.release()

    @staticmethod
    def _wake(group: list[_Call[Any]]) -> None:
        # One wake-up per event loop for the whole group.
        by_loop: dict[asyncio.AbstractEventLoop, list[_Call[Any]]] = {}
        for call in group:
            by_loop.setdefault(call.loop, []).append(call)
        for loop, calls in by_loop.items():
            # A closed loop (RuntimeError): nobody awaits the results any more.
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, calls)

    def _run_in_group(self, call: _Call[Any], func: Callable[..., T], args: tuple[Any, ...]) -> T:
        # On the database thread: ``func`` in a savepoint of the group's transaction.
        conn = self._conn
        if self._writers is None:
            self._lock.acquire()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                self._lock.release()
                raise
            self._writers = []
        writers = self._writers
        hooks = len(self._after_commit)
        # The transaction's first call needs no savepoint: a ROLLBACK undoes it alone.
        alone = not writers
        if not alone:
            conn.execute("SAVEPOINT call")
        try:
            result = func(conn, *args)
        except BaseException as exc:
            if not alone and conn.in_transaction:
                conn.execute("ROLLBACK TO call")
                conn.execute("RELEASE call")
                del self._after_commit[hooks:]
            else:
                # This call's or the whole group's (SQLite rolls the transaction back
                # itself on a full disk, say): the earlier writes are gone too, and
                # their callers hear why.
                with suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                self._writers = None
                self._after_commit = []
                self._lock.release()
                for earlier in writers:
                    earlier.undone(exc)
            raise
        if not alone:
            conn.execute("RELEASE call")
        if not writers or writers[-1] is not call:  # calls run one after the other
            writers.append(call)
        return result

    # -- transactions ------------------------------------------------------------------

    def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(connection, *args)`` in one transaction.

        On the database thread the transaction joins the group's (its result
        is delivered after the group's COMMIT); elsewhere it runs and commits
        alone in the calling thread.
        """
        call = self._current
        if call is not None and threading.current_thread() is self._thread:
            return self._run_in_group(call, func, args)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = func(self._conn, *args)
            except BaseException:
                self._after_commit = []
                self._conn.execute("ROLLBACK")
                raise
            hooks, self._after_commit = self._after_commit, []
            try:
                self._conn.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error):
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                raise
            _run_hooks(hooks)
        return result

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Run ``hook()`` once the transaction running now has committed (never if it is
        rolled back), in the committing thread, before any caller hears of the commit.
        Only from inside a transaction's function."""
        self._after_commit.append(hook)

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        """Like :meth:`run`, on the database thread: the event loop never waits on SQLite."""
        return await self.in_thread(self.run, func, *args)

    async def in_thread(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` on the database thread (blocking work: transactions, files).

        The result comes once the transactions ``func`` ran have committed.
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


def _run_hooks(hooks: list[Callable[[], None]]) -> None:
    for hook in hooks:
        try:
            hook()
        except Exception:  # one hook's failure must not keep the others (or the callers) waiting
            log.exception("after-commit work failed")


async def _wait_out(call: _Call[Any]) -> None:
    # A native Task.cancel() cancelled the waiter: wait for the work to end (on
    # fresh waiters, through further native cancellations) before it is raised.
    while not call.finished:
        call.waiter = call.loop.create_future()
        with suppress(asyncio.CancelledError):
            await call.waiter
