"""Transactions that change a task, and HasPendingSubtasks answered without a trip."""

from __future__ import annotations

from collections.abc import Callable
from sqlite3 import Connection
from typing import Any, TypeVar

from . import _handouts
from ._db import Database

T = TypeVar("T")


class Changes:
    """Runs every transaction that may change a task, and keeps the task's has-pending
    answer that each one computes.

    Why the kept answer is never stale for a caller: transactions run one at a
    time on the database thread, and each stores its answer right after its
    commit, before its caller is woken up. So the answer read on the event
    loop is the one of the latest transaction whose store is done; a
    transaction committed but not yet stored has not answered its caller, and
    HasPendingSubtasks may be ordered before it. A transaction that raises was
    rolled back and changed nothing. A restart starts empty.
    """

    def __init__(self, db: Database, max_retries: int) -> None:
        self._db = db
        self._max_retries = max_retries
        # task id -> has_pending's answer after the task's latest transaction;
        # written on the database thread only, read on the loop.
        self.kept: dict[str, bool] = {}

    def change(self, task_id: str, func: Callable[..., T], *args: Any) -> T:
        """On the database thread: ``func(conn, task_id, *args)`` in one transaction that
        also computes the task's has-pending answer."""
        done: tuple[T, bool | None] = self._db.run(self._then_pending, task_id, func, args)
        result, pending = done
        if pending is None:
            self.kept.pop(task_id, None)  # has_pending raises for it: ask the database
        else:
            self.kept[task_id] = pending
        return result

    def _then_pending(
        self, conn: Connection, task_id: str, func: Callable[..., T], args: tuple[Any, ...]
    ) -> tuple[T, bool | None]:
        result = func(conn, task_id, *args)
        return result, _handouts.pending_or_none(conn, task_id, self._max_retries)

    async def write(self, task_id: str, func: Callable[..., T], *args: Any) -> T:
        """:meth:`change` in one trip to the database thread."""
        return await self._db.in_thread(self.change, task_id, func, *args)

    def _ask(self, task_id: str) -> bool:
        # On the database thread: the uncached answer, kept like change's.
        pending = self._db.run(_handouts.has_pending, task_id, self._max_retries)
        self.kept[task_id] = pending
        return pending

    async def has_pending(self, task_id: str) -> bool:
        """The task's answer after its latest transaction (a trip only when none is kept)."""
        pending = self.kept.get(task_id)
        if pending is not None:
            return pending
        return await self._db.in_thread(self._ask, task_id)
