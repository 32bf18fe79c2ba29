"""The merge's view of the parts' results: streamed from the database in part order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from anyio import NoEventLoopError, from_thread

from .._contexts import PartResult
from . import _tasks
from ._db import Database

#: Results read per transaction while a merge iterates.
MERGE_BATCH = 1000


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class StoredResults:
    """Every done part's result in part order, read a batch at a time (see
    :class:`golem_apps.PartResults`); memory stays bounded at any task size."""

    def __init__(
        self, db: Database, task_id: str, outputs: Path, with_params: bool, total: int
    ) -> None:
        self._db = db
        self._args = (task_id, outputs, with_params)
        self._total = total

    def __len__(self) -> int:
        return self._total

    def __iter__(self) -> Iterator[PartResult]:
        if _on_event_loop():
            raise RuntimeError(
                "the merge's results are read from the database: iterate them with `async for`"
                " in an async merge handler (a plain `for` would block the event loop)"
            )
        after = -1
        while True:
            batch = self._read(after)
            for _, result in batch:
                yield result
            if len(batch) < MERGE_BATCH:
                return
            after = batch[-1][0]

    def _read(self, after: int) -> list[tuple[int, PartResult]]:
        # From an anyio worker thread (a sync merge handler, the default merge): on the
        # database thread like every transaction; from elsewhere, in this thread.
        args = (_tasks.part_results, *self._args, after, MERGE_BATCH)
        try:
            return from_thread.run(self._db.call, *args)
        except NoEventLoopError:  # not an anyio worker thread
            return self._db.run(*args)

    async def __aiter__(self) -> AsyncIterator[PartResult]:
        after = -1
        while True:
            batch = await self._db.call(_tasks.part_results, *self._args, after, MERGE_BATCH)
            for _, result in batch:
                yield result
            if len(batch) < MERGE_BATCH:
                return
            after = batch[-1][0]
