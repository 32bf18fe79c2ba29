"""Opening the engine of a work dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from ._base import Engine, Hooks


@asynccontextmanager
async def open_engine(work_dir: Path, hooks: Hooks) -> AsyncIterator[Engine]:
    """Open the engine that keeps the state of every task under ``work_dir``.

    The state lives in a SQLite database in ``work_dir`` and survives restarts.
    """
    # Deferred: only the requestor pays for sqlite3 (this module is imported with the
    # package; the SQLite engine imports _base, never this module).
    from ._sqlite import open_sqlite_engine

    async with open_sqlite_engine(work_dir, hooks) as engine:
        yield engine
