"""The durable engine: every task's state in one SQLite database in the work dir.

Each RPC that changes state is one transaction, committed before the call
returns; SQLite and file work run in worker threads. What lives only in
memory is what a restart must forget anyway: the running verifications
(their subtasks stay ``computing`` in the database, so the node's repeated
Verify runs the hook again) and the running merges (re-run at start-up).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from anyio import to_thread
from anyio.abc import TaskGroup

from .._contexts import MergeContext, Part, TaskContext, Verdict, VerifyContext
from .._contexts import VerifyResult as R
from .._exceptions import InvalidTask, WrongState
from ..constants import SUBTASK_OUTPUTS_DIR
from . import _files, _ops
from ._base import Assignment, Hooks
from ._db import DB_NAME, Database

log = logging.getLogger("golem_apps.engine")

#: Parts recorded per transaction while a task is created.
CREATE_BATCH = 2000


class SqliteEngine:
    """Keeps every task of a work dir in SQLite; see :class:`golem_apps.engine.Engine`."""

    def __init__(self, work_dir: Path, hooks: Hooks, db: Database) -> None:
        self._work_dir = work_dir
        self._hooks = hooks
        self._db = db
        # task id -> subtask id -> the cancel scope of its running verification
        self._verifying: dict[str, dict[str, anyio.CancelScope]] = {}
        # task id -> set once its running merge has ended
        self._merging: dict[str, anyio.Event] = {}

    # -- CreateTask ------------------------------------------------------------

    async def create_task(self, task: TaskContext, parts: AsyncIterable[Part]) -> None:
        """Record the task and its parts, a batch per transaction; the task is usable when all are.

        A failure (bad part, too many parts, the split handler raising) removes
        what was recorded; so does a restart after a crash mid-way.
        """
        task_id = task.task_id
        await self._db.call(_ops.begin_task, task_id, json.dumps(task.params))
        try:
            inputs = await to_thread.run_sync(_files.list_inputs, task.task_dir)
            count = 0
            batch: list[Part] = []
            async for part in parts:
                if 0 < task.max_subtasks <= count:
                    raise InvalidTask(
                        f"task {task_id!r}: the task handler returned more than "
                        f"max_subtasks_count={task.max_subtasks} parts"
                    )
                batch.append(part)
                count += 1
                if len(batch) == CREATE_BATCH:
                    await self._insert(task_id, count - len(batch), batch, inputs)
                    batch = []
            if batch:
                await self._insert(task_id, count - len(batch), batch, inputs)
            if count == 0:
                raise InvalidTask(f"task {task_id!r}: the task handler returned no parts")
            await self._db.call(_ops.finish_task, task_id)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._db.call(_ops.delete_task, task_id)
            raise

    async def _insert(
        self, task_id: str, start: int, batch: list[Part], inputs: frozenset[str]
    ) -> None:
        await self._db.call(_ops.insert_parts, task_id, start, batch, inputs)

    # -- HasPendingSubtasks / NextSubtask ----------------------------------------

    async def has_pending_subtasks(self, task_id: str) -> bool:
        """True iff a part is ready and the retry budget is not spent.

        While the task's merge runs (after a restart, say) this waits for it.
        """
        merging = self._merging.get(task_id)
        if merging is not None:
            await merging.wait()
        return await self._db.call(_ops.has_pending, task_id, self._hooks.max_retries)

    async def next_subtask(self, task_id: str, subtask_id: str, node_id: str) -> Assignment | None:
        """Hand out the first ready part and place its resources in subtask_inputs."""
        handout = await to_thread.run_sync(self._hand_out, task_id, subtask_id, node_id)
        return None if handout is None else Assignment(handout.params, handout.resources)

    def _hand_out(self, task_id: str, subtask_id: str, node_id: str) -> _ops.Handout | None:
        # In a worker thread: one trip for the transaction and the file work.
        max_retries = self._hooks.max_retries
        handout = self._db.run(_ops.next_subtask, task_id, subtask_id, node_id, max_retries)
        if handout is None or not (handout.inputs or handout.results):
            return handout
        try:
            _files.place_resources(self._work_dir / task_id, handout.inputs, handout.results)
        except OSError as exc:
            self._db.run(_ops.abort_handout, task_id, subtask_id)
            missing = Path(exc.filename).name if exc.filename else str(exc)
            raise InvalidTask(
                f"task {task_id!r}: cannot place the resources of part {handout.part_name!r} "
                f"(subtask {subtask_id!r}): {missing!r} is missing"
            ) from None
        return handout

    # -- Verify ------------------------------------------------------------------

    async def verify(self, task_id: str, subtask_id: str) -> Verdict:
        """Verify the subtask's result; after the last part, merge. AbortTask cancels both."""
        running = self._verifying.setdefault(task_id, {})
        if subtask_id in running:
            raise WrongState(f"subtask {subtask_id!r} of task {task_id!r} is being verified")
        with anyio.CancelScope() as scope:
            running[subtask_id] = scope
            try:
                verdict = await self._verify(task_id, subtask_id)
            finally:
                del running[subtask_id]
                if not running:
                    self._verifying.pop(task_id, None)
        if scope.cancelled_caught:
            raise WrongState(
                f"task {task_id!r} was aborted while subtask {subtask_id!r} was being verified"
            )
        return verdict

    async def _verify(self, task_id: str, subtask_id: str) -> Verdict:
        if await self._db.call(_ops.awaiting_merge, task_id, subtask_id):
            # The merge after this verification failed (a full disk, say): the
            # node's retried Verify runs it again.
            if task_id in self._merging:
                raise WrongState(f"task {task_id!r} is being merged")
            await self._merge(task_id)
            return Verdict(R.SUCCESS)
        pending, path, non_empty = await to_thread.run_sync(self._prepare, task_id, subtask_id)
        task_dir = self._work_dir / task_id
        if path is None:
            folder = f"{SUBTASK_OUTPUTS_DIR}/{subtask_id}"
            verdict = Verdict(R.FAILURE, f"subtask {subtask_id!r}: no result file in {folder}")
        elif self._hooks.verify is not None:
            context = VerifyContext(
                task_id=task_id,
                subtask_id=subtask_id,
                part_name=pending.part_name,
                params=pending.params,
                task_dir=task_dir,
                result_path=path,
                node_id=pending.node_id,
            )
            verdict = await self._hooks.verify(context)
        elif non_empty:
            verdict = Verdict(R.SUCCESS)
        else:
            verdict = Verdict(R.FAILURE, f"subtask {subtask_id!r}: result {path.name!r} is empty")
        result = path.name if path is not None else None
        complete = await self._db.call(_ops.record_verdict, task_id, subtask_id, verdict, result)
        if complete:
            await self._merge(task_id)
        return verdict

    def _prepare(self, task_id: str, subtask_id: str) -> tuple[_ops.Pending, Path | None, bool]:
        # In a worker thread: the subtask's state, its result file, the default check.
        pending = self._db.run(_ops.pending_verification, task_id, subtask_id)
        path = _files.result_file(self._work_dir / task_id, subtask_id)
        if path is None or self._hooks.verify is not None:
            return pending, path, False
        return pending, path, _files.default_verdict(path)

    async def _merge(self, task_id: str) -> None:
        done = self._merging.setdefault(task_id, anyio.Event())
        try:
            task_dir = self._work_dir / task_id
            outputs = task_dir / SUBTASK_OUTPUTS_DIR
            custom = self._hooks.merge is not None
            params, results = await self._db.call(_ops.merge_inputs, task_id, outputs, custom)
            if self._hooks.merge is None:
                pairs = [(r.name, r.path) for r in results]
                await to_thread.run_sync(_files.copy_results, task_dir, pairs)
            else:
                await to_thread.run_sync(_files.clear_outputs, task_dir)
                await self._hooks.merge(MergeContext(task_id, params, task_dir, results))
            await self._db.call(_ops.finish_merge, task_id)
        finally:
            done.set()
            self._merging.pop(task_id, None)

    async def _recover_merge(self, task_id: str) -> None:
        try:
            await self._merge(task_id)
        except Exception as exc:  # logged, and retried at the next start
            log.error("merge of task %r failed: %s: %s", task_id, type(exc).__name__, exc)

    def start_recovery(self, task_group: TaskGroup, task_ids: list[str]) -> None:
        """Re-run, in the background, the merges a crash interrupted."""
        for task_id in task_ids:
            self._merging[task_id] = anyio.Event()
            task_group.start_soon(self._recover_merge, task_id)

    # -- DiscardSubtasks / AbortSubtask / AbortTask ---------------------------------

    async def discard_subtasks(self, task_id: str, subtask_ids: list[str]) -> list[str]:
        """Discard the subtasks' results and their dependents'; return the ids discarded."""
        return await self._db.call(_ops.discard, task_id, list(subtask_ids))

    async def abort_subtask(self, task_id: str, subtask_id: str) -> None:
        """The computing subtask's part goes back to the ready pool."""
        await self._db.call(_ops.abort_subtask, task_id, subtask_id)

    async def abort_task(self, task_id: str) -> None:
        """Mark the task aborted (committed first), then cancel its running verifications."""
        await self._db.call(_ops.abort_task, task_id)
        for scope in list(self._verifying.get(task_id, {}).values()):
            scope.cancel()

    async def aclose(self) -> None:
        """Close the database."""
        await to_thread.run_sync(self._db.close)

    def __repr__(self) -> str:
        return f"SqliteEngine({self._db.path!s})"


@asynccontextmanager
async def open_sqlite_engine(work_dir: Path, hooks: Hooks) -> AsyncIterator[SqliteEngine]:
    """Open (or create) the work dir's database, recover from a crash, and yield the engine."""
    db = await to_thread.run_sync(Database, work_dir / DB_NAME)
    try:
        merges = await db.call(_ops.recover)
        engine = SqliteEngine(work_dir, hooks, db)
        body_error: BaseException | None = None
        async with anyio.create_task_group() as task_group:
            engine.start_recovery(task_group, merges)
            try:
                yield engine
            except BaseException as exc:
                # Re-raised below, outside the task group, so that the caller's
                # errors do not come back wrapped in an exception group.
                body_error = exc
            finally:
                task_group.cancel_scope.cancel()
        if body_error is not None:
            raise body_error
    finally:
        await to_thread.run_sync(db.close)
