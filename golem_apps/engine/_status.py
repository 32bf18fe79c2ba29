"""The status writer: keeps each task's status file (``status.json``) fresh."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import anyio

from .._exceptions import TaskNotFound
from .._taskstatus import write_task_status
from . import _tasks
from ._db import Database

log = logging.getLogger("golem_apps.engine")

#: Seconds between two writes of the status files (a ban or a task's end writes at once).
STATUS_INTERVAL = 0.25
#: The writer pauses at least this many times as long as its last round of writes
#: took, so that status writes keep at most about 1/(1+factor) of the database thread.
STATUS_PAUSE_FACTOR = 10


class StatusWriter:
    """Writes the status file of every task changed since its last write, at a bounded pace."""

    def __init__(self, db: Database, work_dir: Path, max_retries: int) -> None:
        self._db = db
        self._work_dir = work_dir
        self._max_retries = max_retries
        self._dirty: set[str] = set()  # tasks whose status file is out of date
        # Tasks whose last write failed on a database error (warned of once per streak):
        # written on the database thread, read once its call has returned (their files
        # are written again).
        self._failing: set[str] = set()
        self._dirty_event = anyio.Event()
        self._stop_event = anyio.Event()
        self._stopping = False

    def touch(self, task_id: str) -> None:
        """The task changed: its file is rewritten soon (at most every STATUS_INTERVAL)."""
        self._dirty.add(task_id)
        self._dirty_event.set()

    async def write_now(self, task_id: str) -> float:
        """Write the task's file now; the seconds it held the database thread."""
        self._dirty.discard(task_id)
        spent = await self._db.in_thread(self._to_file, task_id)
        if task_id in self._failing:
            self.touch(task_id)  # tried again at the next round, STATUS_INTERVAL on
        return spent

    def _to_file(self, task_id: str) -> float:
        # On the database thread: read and write in one trip, so that writes
        # (queued in order) never replace a newer status with an older one. The
        # work committed with this call's group comes first: the file shows only
        # what is committed.
        start = time.perf_counter()
        self._db.flush()
        try:
            status = self._db.run(_tasks.task_status, task_id, self._max_retries)
            write_task_status(self._work_dir / task_id, status)
        except (OSError, TaskNotFound) as exc:  # the task's folder is gone: nothing to show
            log.debug("status of task %r not written: %s", task_id, exc)
            self._failing.discard(task_id)
        except sqlite3.Error as exc:
            # A read that failed (an I/O error, say) must not stop the requestor, whose
            # RPCs may still work: the file keeps its last content and is written again.
            if task_id not in self._failing:
                self._failing.add(task_id)
                log.warning("status of task %r not written (tried again): %s", task_id, exc)
        else:
            self._failing.discard(task_id)
        return time.perf_counter() - start

    async def write_changed(self) -> float:
        """Write the file of every task changed since its last write; the seconds it took."""
        spent = 0.0
        for task_id in list(self._dirty):
            spent += await self.write_now(task_id)
        return spent

    async def run(self) -> None:
        """Keep the files fresh, until :meth:`stop`.

        Writes at most every STATUS_INTERVAL, and rarer when a round of writes
        is slow (a huge task): the pause is at least STATUS_PAUSE_FACTOR times
        the last round, so the writes keep a small share of the database thread.
        """
        try:
            while not self._stopping:
                await self._dirty_event.wait()
                self._dirty_event = anyio.Event()
                spent = await self.write_changed()
                with anyio.move_on_after(max(STATUS_INTERVAL, STATUS_PAUSE_FACTOR * spent)):
                    await self._stop_event.wait()
        finally:
            with anyio.CancelScope(shield=True):
                await self.write_changed()

    def stop(self) -> None:
        """Make :meth:`run` write what is pending and return."""
        self._stopping = True
        self._stop_event.set()
        self._dirty_event.set()
