"""The merge of a task once its last part is done: one at a time, re-run after a crash."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
from anyio import to_thread
from anyio.abc import TaskGroup

from .._contexts import MergeContext
from ..constants import SUBTASK_OUTPUTS_DIR
from . import _files, _rows, _tasks
from ._base import Hooks
from ._db import Database
from ._pending import Changes
from ._results import StoredResults
from ._states import TaskState
from ._status import StatusWriter

log = logging.getLogger("golem_apps.engine")


class Merges:
    """Runs the merges; what a restart must forget (the running ones) lives here only."""

    def __init__(
        self, db: Database, work_dir: Path, hooks: Hooks, changes: Changes, status: StatusWriter
    ) -> None:
        self._db = db
        self._work_dir = work_dir
        self._hooks = hooks
        self._changes = changes
        self._status = status
        # task id -> set once its running merge has ended
        self._running: dict[str, anyio.Event] = {}

    async def wait(self, task_id: str) -> None:
        """Return once the task's running merge (if any) has ended."""
        running = self._running.get(task_id)
        if running is not None:
            await running.wait()

    async def merged(self, task_id: str) -> None:
        """Return once the task's merge is done: wait for the running one, or run it."""
        while True:
            running = self._running.get(task_id)
            if running is not None:
                await running.wait()
            elif await self._db.call(_rows.task_state, task_id) is not TaskState.MERGING:
                return
            elif task_id not in self._running:  # looked at again after the trip
                await self.merge(task_id)
                return

    async def merge(self, task_id: str, done: anyio.Event | None = None) -> None:
        """Merge the task's results into task_outputs (or wait for the merge running).

        ``done``: the merge's event, made by :meth:`start_recovery` before it runs.
        """
        if done is None:
            if task_id in self._running:  # one merge at a time
                await self.merged(task_id)
                return
            done = self._running[task_id] = anyio.Event()
        try:
            task_dir = self._work_dir / task_id
            outputs = task_dir / SUBTASK_OUTPUTS_DIR
            custom = self._hooks.merge is not None
            total = (await self._db.call(_rows.task_row, task_id)).total
            results = StoredResults(self._db, task_id, outputs, custom, total)
            if self._hooks.merge is None:
                shared = await self._db.call(_tasks.shared_result_names, task_id)
                await to_thread.run_sync(_files.merge_results, task_dir, results, shared)
            else:
                params = await self._db.call(_tasks.task_params, task_id)
                await to_thread.run_sync(_files.clear_outputs, task_dir)
                await self._hooks.merge(MergeContext(task_id, params, task_dir, results))
            await self._changes.write(task_id, _tasks.finish_merge)
            await self._status.write_now(task_id)
            if self._hooks.finished is not None:
                await self._hooks.finished(task_id)
        finally:
            done.set()
            self._running.pop(task_id, None)

    async def _recover(self, task_id: str, done: anyio.Event) -> None:
        try:
            await self.merge(task_id, done)
        except Exception as exc:  # logged, and retried at the next start or Verify
            log.error("merge of task %r failed: %s: %s", task_id, type(exc).__name__, exc)

    def start_recovery(self, task_group: TaskGroup, task_ids: list[str]) -> None:
        """Re-run, in the background, the merges a crash interrupted."""
        for task_id in task_ids:
            done = self._running[task_id] = anyio.Event()
            task_group.start_soon(self._recover, task_id, done)
