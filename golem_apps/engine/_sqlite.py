"""The durable engine: every task's state in one SQLite database in the work dir.

Each RPC that changes state is one transaction, committed before the call
returns. SQLite and the per-call file work run on the database's own thread,
one trip per RPC where possible (a trip costs more than the SQL of a cycle);
only the merge's copies and the vote's digests, long and rare, go to anyio's
worker threads so that they hold up no other call. What lives only in
memory is what a restart must forget anyway: the running verifications
(their subtasks stay ``computing`` in the database, so the node's repeated
Verify runs the hook again), the running merges (re-run at start-up) and
the has-pending answers (see :class:`._pending.Changes`).

The features have a module each: hand-outs and their recovery
(:mod:`._handouts`), Verify (:mod:`._verifier`, with the policy of
:mod:`._policy`), the merge (:mod:`._merges`), the status file
(:mod:`._status`); this class is the RPCs' orchestration.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from anyio import to_thread

from .._contexts import Verdict
from .._exceptions import InvalidTask, WrongState
from .._task import Part, TaskContext
from .._taskstatus import TaskStatus
from . import _faults, _files, _handouts, _tasks
from ._base import Assignment, Hooks
from ._db import DB_NAME, Database
from ._merges import Merges
from ._pending import Changes
from ._rows import Handout
from ._status import StatusWriter
from ._verifier import Verifier

#: Parts recorded per transaction while a task is created.
CREATE_BATCH = 2000


class SqliteEngine:
    """Keeps every task of a work dir in SQLite; see :class:`golem_apps.engine.Engine`."""

    def __init__(self, work_dir: Path, hooks: Hooks, db: Database) -> None:
        self._work_dir = work_dir
        self._hooks = hooks
        self._db = db
        self._changes = Changes(db, hooks.max_retries)
        self._status = StatusWriter(db, work_dir, hooks.max_retries)
        self._merges = Merges(db, work_dir, hooks, self._changes, self._status)
        self._verifier = Verifier(db, work_dir, hooks, self._changes, self._merges, self._status)
        # task id -> subtask id -> the cancel scope of its running verification
        self._verifying: dict[str, dict[str, anyio.CancelScope]] = {}

    # -- CreateTask ------------------------------------------------------------

    async def create_task(self, task: TaskContext, parts: AsyncIterable[Part]) -> None:
        """Record the task and its parts, a batch per transaction; the task is usable when all are.

        A failure (bad part, too many parts, the split handler raising) removes
        what was recorded; so does a restart after a crash mid-way.
        """
        task_id = task.task_id
        hooks = self._hooks
        write = self._changes.write
        params = json.dumps(task.params)
        await write(task_id, _tasks.begin_task, params, hooks.redundancy, hooks.ban_after)
        try:
            inputs = await self._db.in_thread(_files.list_inputs, task.task_dir, self._work_dir)
            count = 0
            batch: list[Part] = []
            async for part in parts:
                if 0 < task.max_subtasks <= count:
                    raise InvalidTask(
                        f"task {task_id!r}: the task handler returned more than "
                        f"max_subtasks_count={task.max_subtasks} parts (the subtasks the "
                        f"node user asked for): split into at most task.max_subtasks parts, "
                        f"or create the task with a larger max_subtasks_count"
                    )
                batch.append(part)
                count += 1
                if len(batch) == CREATE_BATCH:
                    await write(task_id, _tasks.insert_parts, count - len(batch), batch, inputs)
                    batch = []
            if batch:
                await write(task_id, _tasks.insert_parts, count - len(batch), batch, inputs)
            if count == 0:
                raise InvalidTask(f"task {task_id!r}: the task handler returned no parts")
            await write(task_id, _tasks.finish_task)
            self._status.touch(task_id)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await write(task_id, _tasks.delete_task)
            raise

    # -- HasPendingSubtasks / NextSubtask ----------------------------------------

    async def has_pending_subtasks(self, task_id: str) -> bool:
        """True iff a part is ready (or a lost hand-out is due a backup copy) and the retry
        budget is not spent. While the task's merge runs (after a restart, say) this
        waits for it."""
        await self._merges.wait(task_id)
        return await self._changes.has_pending(task_id)

    async def next_subtask(self, task_id: str, subtask_id: str, node_id: str) -> Assignment | None:
        """Hand out the first ready part and place its resources in subtask_inputs."""
        handout = await self._db.in_thread(self._hand_out, task_id, subtask_id, node_id)
        if handout is None:
            return None
        self._status.touch(task_id)
        return Assignment(handout.params, handout.resources)

    def _hand_out(self, task_id: str, subtask_id: str, node_id: str) -> Handout | None:
        # On the database thread: one trip for the transaction and the file work.
        max_retries = self._hooks.max_retries
        change = self._changes.change
        handout = change(task_id, _handouts.next_subtask, subtask_id, node_id, max_retries)
        if handout is None or not (handout.inputs or handout.results):
            return handout
        try:
            _files.place_resources(self._work_dir / task_id, handout.inputs, handout.results)
        except OSError as exc:
            change(task_id, _handouts.abort_handout, subtask_id)
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
                verdict = await self._verifier.verify(task_id, subtask_id)
            finally:
                del running[subtask_id]
                if not running:
                    self._verifying.pop(task_id, None)
        if scope.cancelled_caught:
            raise WrongState(
                f"task {task_id!r} was aborted while subtask {subtask_id!r} was being verified"
            )
        return verdict

    # -- DiscardSubtasks / AbortSubtask / AbortTask ---------------------------------

    async def discard_subtasks(self, task_id: str, subtask_ids: list[str]) -> list[str]:
        """Discard the subtasks' results and their dependents'; return the ids discarded."""
        discarded = await self._changes.write(task_id, _handouts.discard, list(subtask_ids))
        self._status.touch(task_id)
        return discarded

    async def abort_subtask(self, task_id: str, subtask_id: str) -> None:
        """The computing subtask's part goes back to the ready pool."""
        await self._changes.write(task_id, _handouts.abort_subtask, subtask_id)
        self._status.touch(task_id)

    async def abort_task(self, task_id: str) -> None:
        """Mark the task aborted (committed first), then cancel its running verifications."""
        await self._changes.write(task_id, _tasks.abort_task)
        for scope in list(self._verifying.get(task_id, {}).values()):
            scope.cancel()
        await self._status.write_now(task_id)

    # -- status ----------------------------------------------------------------------

    async def task_status(self, task_id: str) -> TaskStatus:
        """The task's status now: parts by status, subtasks per node, bans, retries."""
        return await self._db.call(_tasks.task_status, task_id, self._hooks.max_retries)

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
        merges = await db.call(_tasks.recover)
        engine = SqliteEngine(work_dir, hooks, db)
        _faults.install(engine)  # nothing unless a crash test asks for it
        body_error: BaseException | None = None
        # The status writer is stopped by a flag, not cancelled: its last writes
        # run and no cancellation reaches the caller's task on a normal exit.
        async with anyio.create_task_group() as writer_group:
            writer_group.start_soon(engine._status.run)
            try:
                async with anyio.create_task_group() as task_group:
                    engine._merges.start_recovery(task_group, merges)
                    try:
                        yield engine
                    except BaseException as exc:
                        # Re-raised below, outside the task groups, so that the caller's
                        # errors do not come back wrapped in an exception group.
                        body_error = exc
                    finally:
                        task_group.cancel_scope.cancel()
            finally:
                engine._status.stop()
        if body_error is not None:
            raise body_error
    finally:
        await to_thread.run_sync(db.close)
