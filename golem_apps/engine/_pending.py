"""Transactions that change a task, and HasPendingSubtasks answered without a trip."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from sqlite3 import Connection
from typing import Any, TypeVar

from . import _handouts
from ._db import Database

T = TypeVar("T")


class Changes:
    """Runs every transaction that may change a task, and keeps the task's has-pending
    answer that each one computes.

    Why the kept answer is never stale for a caller: transactions run one at a
    time on the database thread, and each stores its answer once it has
    committed (an after-commit hook: with its group, in commit order), before
    its caller is woken up. So the answer read on the event loop is the one of
    the latest transaction whose store is done; a transaction not yet
    committed and stored has not answered its caller, and HasPendingSubtasks
    may be ordered before it. A transaction rolled back stores nothing. A
    restart starts empty.
    """

    def __init__(self, db: Database, max_retries: int) -> None:
        self._db = db
        self._max_retries = max_retries
        # task id -> has_pending's answer after the task's latest transaction;
        # written on the database thread only, read on the loop.
        self.kept: dict[str, bool] = {}

    def change(self, task_id: str, func: Callable[..., T], *args: Any) -> T:
        """On the database thread: ``func(conn, task_id, *args)`` in one transaction that
        also computes the task's has-pending answer (kept once it has committed)."""
        result: T = self._db.run(self._then_pending, task_id, func, args)
        return result

    def _then_pending(
        self, conn: Connection, task_id: str, func: Callable[..., T], args: tuple[Any, ...]
    ) -> T:
        result = func(conn, task_id, *args)
        pending = _handouts.pending_or_none(conn, task_id, self._max_retries)
        self._keep_after_commit(task_id, pending)
        return result

    def _keep_after_commit(self, task_id: str, pending: bool | None) -> None:
        self._db.after_commit(partial(self._keep, task_id, pending))

    def _keep(self, task_id: str, pending: bool | None) -> None:
        if pending is None:
            self.kept.pop(task_id, None)  # has_pending raises for it: ask the database
        else:
            self.kept[task_id] = pending

    async def write(self, task_id: str, func: Callable[..., T], *args: Any) -> T:
        """:meth:`change` in one trip to the database thread."""
        return await self._db.in_thread(self.change, task_id, func, *args)

    def _pending(self, conn: Connection, task_id: str) -> bool:
        pending = _handouts.has_pending(conn, task_id, self._max_retries)
        self._keep_after_commit(task_id, pending)
        return pending

    async def has_pending(self, task_id: str) -> bool:
        """The task's answer after its latest transaction (a trip only when none is kept)."""
        pending = self.kept.get(task_id)
        if pending is not None:
            return pending
        return await self._db.call(self._pending, task_id)
