"""The durable engine: every task's state in one SQLite database in the work dir.

Each RPC that changes state is one transaction, committed before the call
returns. SQLite and the per-call file work run on the database's own thread,
one trip per RPC where possible (a trip costs more than the SQL of a cycle);
only the merge's copies and the vote's digests, long and rare, go to anyio's
worker threads so that they hold up no other call. What lives only in
memory is what a restart must forget anyway: the running verifications
(their subtasks stay ``computing`` in the database, so the node's repeated
Verify runs the hook again), the running merges (re-run at start-up) and
the has-pending answers (see :meth:`SqliteEngine._change`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from sqlite3 import Connection
from typing import Any, TypeVar

import anyio
from anyio import to_thread
from anyio.abc import TaskGroup

from .._contexts import MergeContext, Part, TaskContext, Verdict, VerifyContext
from .._contexts import VerifyResult as R
from .._exceptions import InvalidTask, TaskNotFound, WrongState
from .._taskstatus import TaskStatus, write_task_status
from ..constants import SUBTASK_OUTPUTS_DIR
from . import _faults, _files, _ops
from ._base import Assignment, Hooks
from ._db import DB_NAME, Database

log = logging.getLogger("golem_apps.engine")

#: Parts recorded per transaction while a task is created.
CREATE_BATCH = 2000
#: Seconds between two writes of the status files (a ban or a task's end writes at once).
STATUS_INTERVAL = 0.25
#: The status writer pauses at least this many times as long as its last round of writes
#: took, so that status writes keep at most about 1/(1+factor) of the database thread.
STATUS_PAUSE_FACTOR = 10

T = TypeVar("T")


@dataclass(frozen=True)
class _Checked:
    """What Verify's first trip found (and, without a verify hook, did)."""

    merge: bool = False
    """The subtask's stored verdict is a success and the task's merge is still to do."""
    pending: _ops.Pending | None = None
    path: Path | None = None
    decided: Verdict | None = None
    """The verdict stored for this subtask (by a vote, or a Verify whose reply was lost)."""
    verdict: Verdict | None = None
    outcome: _ops.Outcome | None = None
    """record_verdict's, when the verdict was decided and recorded in the trip."""


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
        # task id -> has_pending's answer after the task's latest transaction;
        # written on the database thread only (see _change), read on the loop.
        self._pending: dict[str, bool] = {}
        # tasks whose status file is out of date
        self._dirty: set[str] = set()
        self._dirty_event = anyio.Event()
        self._stop_event = anyio.Event()
        self._stopping = False

    # -- CreateTask ------------------------------------------------------------

    async def create_task(self, task: TaskContext, parts: AsyncIterable[Part]) -> None:
        """Record the task and its parts, a batch per transaction; the task is usable when all are.

        A failure (bad part, too many parts, the split handler raising) removes
        what was recorded; so does a restart after a crash mid-way.
        """
        task_id = task.task_id
        hooks = self._hooks
        await self._write(
            task_id, _ops.begin_task, json.dumps(task.params), hooks.redundancy, hooks.ban_after
        )
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
                    await self._insert(task_id, count - len(batch), batch, inputs)
                    batch = []
            if batch:
                await self._insert(task_id, count - len(batch), batch, inputs)
            if count == 0:
                raise InvalidTask(f"task {task_id!r}: the task handler returned no parts")
            await self._write(task_id, _ops.finish_task)
            self._touch(task_id)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._write(task_id, _ops.delete_task)
            raise

    async def _insert(
        self, task_id: str, start: int, batch: list[Part], inputs: frozenset[str]
    ) -> None:
        await self._write(task_id, _ops.insert_parts, start, batch, inputs)

    # -- transactions and the has-pending cache ------------------------------------

    def _change(self, task_id: str, func: Callable[..., T], *args: Any) -> T:
        """On the database thread: ``func(conn, task_id, *args)`` in one transaction that
        also computes the task's has-pending answer, kept for HasPendingSubtasks.

        Every transaction that may change a task goes through here (reads need
        not). Why the kept answer is never stale for a caller: transactions run
        one at a time on this thread, and each stores its answer right after
        its commit, before its caller is woken up. So the answer read on the
        event loop is the one of the latest transaction whose store is done; a
        transaction committed but not yet stored has not answered its caller,
        and HasPendingSubtasks may be ordered before it. A transaction that
        raises was rolled back and changed nothing. A restart starts empty.
        """
        done: tuple[T, bool | None] = self._db.run(self._then_pending, task_id, func, args)
        result, pending = done
        if pending is None:
            self._pending.pop(task_id, None)  # has_pending raises for it: ask the database
        else:
            self._pending[task_id] = pending
        return result

    def _then_pending(
        self, conn: Connection, task_id: str, func: Callable[..., T], args: tuple[Any, ...]
    ) -> tuple[T, bool | None]:
        result = func(conn, task_id, *args)
        return result, _ops.pending_or_none(conn, task_id, self._hooks.max_retries)

    async def _write(self, task_id: str, func: Callable[..., T], *args: Any) -> T:
        """:meth:`_change` in one trip to the database thread."""
        return await self._db.in_thread(self._change, task_id, func, *args)

    def _ask_pending(self, task_id: str) -> bool:
        # On the database thread: the uncached answer, kept like _change's.
        pending = self._db.run(_ops.has_pending, task_id, self._hooks.max_retries)
        self._pending[task_id] = pending
        return pending

    # -- HasPendingSubtasks / NextSubtask ----------------------------------------

    async def has_pending_subtasks(self, task_id: str) -> bool:
        """True iff a part is ready and the retry budget is not spent.

        While the task's merge runs (after a restart, say) this waits for it.
        """
        merging = self._merging.get(task_id)
        if merging is not None:
            await merging.wait()
        pending = self._pending.get(task_id)
        if pending is not None:
            return pending  # the answer of the task's latest transaction: no trip
        return await self._db.in_thread(self._ask_pending, task_id)

    async def next_subtask(self, task_id: str, subtask_id: str, node_id: str) -> Assignment | None:
        """Hand out the first ready part and place its resources in subtask_inputs."""
        handout = await self._db.in_thread(self._hand_out, task_id, subtask_id, node_id)
        if handout is None:
            return None
        self._touch(task_id)
        return Assignment(handout.params, handout.resources)

    def _hand_out(self, task_id: str, subtask_id: str, node_id: str) -> _ops.Handout | None:
        # On the database thread: one trip for the transaction and the file work.
        max_retries = self._hooks.max_retries
        handout = self._change(task_id, _ops.next_subtask, subtask_id, node_id, max_retries)
        if handout is None or not (handout.inputs or handout.results):
            return handout
        try:
            _files.place_resources(self._work_dir / task_id, handout.inputs, handout.results)
        except OSError as exc:
            self._change(task_id, _ops.abort_handout, subtask_id)
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
        # Without a verify hook, one trip does it all; with one, a trip before and after it.
        checked = await self._write(task_id, self._check, subtask_id)
        if checked.decided is not None:
            # Decided already (by a vote, or by a Verify whose reply was lost): the
            # stored verdict, once the outputs are in place. A merge that failed (a
            # full disk, say) or that a crash interrupted runs again.
            if checked.merge:
                await self._merged(task_id)
            return checked.decided
        pending = checked.pending
        assert pending is not None
        if pending.state == "awaiting":
            return await self._vote(task_id, subtask_id)
        verdict, outcome = checked.verdict, checked.outcome
        if outcome is None:  # the verify hook's turn
            path = checked.path
            assert path is not None and self._hooks.verify is not None
            verdict = await self._hooks.verify(self._context(task_id, subtask_id, pending, path))
            record = _ops.record_verdict
            outcome = await self._write(task_id, record, subtask_id, verdict, path.name)
        assert verdict is not None
        if outcome.verdict.result is R.AWAITING_DATA and verdict.result is R.SUCCESS:
            return await self._vote(task_id, subtask_id)  # a redundant task's result
        await self._after(task_id, outcome)
        return outcome.verdict

    def _check(self, conn: Connection, task_id: str, subtask_id: str) -> _Checked:
        # On the database thread, in one transaction: the subtask's state, its
        # result file and, without a verify hook, the default check and its record.
        pending = _ops.pending_verification(conn, task_id, subtask_id)
        if pending.decided is not None:
            due = pending.decided.result is R.SUCCESS
            due = due and _ops.task_state(conn, task_id) == "merging"
            return _Checked(pending=pending, decided=pending.decided, merge=due)
        if pending.state == "awaiting":
            return _Checked(pending=pending)
        path = _files.result_file(self._work_dir / task_id, subtask_id)
        if path is None:
            folder = f"{SUBTASK_OUTPUTS_DIR}/{subtask_id}"
            verdict = Verdict(R.FAILURE, f"subtask {subtask_id!r}: no result file in {folder}")
        elif not _files.inside(path, self._work_dir):
            verdict = Verdict(
                R.FAILURE,
                f"subtask {subtask_id!r}: result {path.name!r} is a symbolic link leading out of "
                "the work dir (not followed)",
            )
        elif self._hooks.verify is not None:
            return _Checked(pending=pending, path=path)
        elif _files.default_verdict(path):
            verdict = Verdict(R.SUCCESS)
        else:
            verdict = Verdict(R.FAILURE, f"subtask {subtask_id!r}: result {path.name!r} is empty")
        result = path.name if path is not None else None
        outcome = _ops.record_verdict(conn, task_id, subtask_id, verdict, result)
        return _Checked(pending=pending, path=path, verdict=verdict, outcome=outcome)

    def _context(
        self, task_id: str, subtask_id: str, pending: _ops.Pending, path: Path
    ) -> VerifyContext:
        return VerifyContext(
            task_id=task_id,
            subtask_id=subtask_id,
            part_name=pending.part_name,
            params=pending.params,
            task_dir=self._work_dir / task_id,
            result_path=path,
            node_id=pending.node_id,
        )

    async def _after(self, task_id: str, outcome: _ops.Outcome) -> None:
        # The status file shows a ban before Verify answers; a complete task merges.
        if outcome.banned:
            await self._write_status(task_id)
        else:
            self._touch(task_id)
        if outcome.complete:
            await self._merge(task_id)

    async def _vote(self, task_id: str, subtask_id: str) -> Verdict:
        """A redundant part: AWAITING_DATA until every copy has a result, then the vote."""
        while True:
            ballot = await self._db.call(_ops.vote_candidates, task_id, subtask_id)
            if not isinstance(ballot, _ops.Ballot):
                results, copies = ballot
                return Verdict(
                    R.AWAITING_DATA, f"{results} of {copies} results in; the vote waits for all"
                )
            groups = await self._group(task_id, ballot)
            try:
                outcome = await self._write(task_id, _ops.apply_vote, subtask_id, ballot, groups)
            except WrongState:
                if await self._db.call(_ops.vote_candidates, task_id, subtask_id) == ballot:
                    raise
                continue  # the ballot changed under us: vote on the new one
            await self._after(task_id, outcome)
            return outcome.verdict

    async def _group(self, task_id: str, ballot: _ops.Ballot) -> list[list[str]]:
        """The ballot's subtask ids in groups of agreeing results, largest (then oldest) first."""
        folder = self._work_dir / task_id / SUBTASK_OUTPUTS_DIR
        paths = {sid: folder / sid / name for sid, name in ballot.results}
        groups: list[list[str]] = []
        if self._hooks.compare is None:
            digests = await to_thread.run_sync(_files.digests, list(paths.values()))
            by_digest: dict[str, list[str]] = {}
            for sid, digest in zip(paths, digests, strict=True):
                by_digest.setdefault(digest, []).append(sid)
            groups = list(by_digest.values())
        else:
            compare = self._hooks.compare
            pendings = await self._db.call(_ops.pending_list, task_id, list(paths))
            contexts = {
                sid: self._context(task_id, sid, pending, paths[sid])
                for sid, pending in zip(paths, pendings, strict=True)
            }
            for sid in paths:
                for group in groups:
                    if await compare(contexts[group[0]], contexts[sid]):
                        group.append(sid)
                        break
                else:
                    groups.append([sid])
        return sorted(groups, key=len, reverse=True)  # stable: ties keep the oldest first

    async def _merged(self, task_id: str) -> None:
        """Return once the task's merge is done: wait for the running one, or run it."""
        while True:
            running = self._merging.get(task_id)
            if running is not None:
                await running.wait()
            elif await self._db.call(_ops.task_state, task_id) != "merging":
                return
            elif task_id not in self._merging:  # looked at again after the trip
                await self._merge(task_id)
                return

    async def _merge(self, task_id: str, done: anyio.Event | None = None) -> None:
        # ``done``: the merge's event, made by start_recovery before the merge runs.
        if done is None:
            if task_id in self._merging:  # one merge at a time: wait for the running one
                await self._merged(task_id)
                return
            done = self._merging[task_id] = anyio.Event()
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
            await self._write(task_id, _ops.finish_merge)
            await self._write_status(task_id)
            if self._hooks.finished is not None:
                await self._hooks.finished(task_id)
        finally:
            done.set()
            self._merging.pop(task_id, None)

    async def _recover_merge(self, task_id: str, done: anyio.Event) -> None:
        try:
            await self._merge(task_id, done)
        except Exception as exc:  # logged, and retried at the next start
            log.error("merge of task %r failed: %s: %s", task_id, type(exc).__name__, exc)

    def start_recovery(self, task_group: TaskGroup, task_ids: list[str]) -> None:
        """Re-run, in the background, the merges a crash interrupted."""
        for task_id in task_ids:
            done = self._merging[task_id] = anyio.Event()
            task_group.start_soon(self._recover_merge, task_id, done)

    # -- DiscardSubtasks / AbortSubtask / AbortTask ---------------------------------

    async def discard_subtasks(self, task_id: str, subtask_ids: list[str]) -> list[str]:
        """Discard the subtasks' results and their dependents'; return the ids discarded."""
        discarded = await self._write(task_id, _ops.discard, list(subtask_ids))
        self._touch(task_id)
        return discarded

    async def abort_subtask(self, task_id: str, subtask_id: str) -> None:
        """The computing subtask's part goes back to the ready pool."""
        await self._write(task_id, _ops.abort_subtask, subtask_id)
        self._touch(task_id)

    async def abort_task(self, task_id: str) -> None:
        """Mark the task aborted (committed first), then cancel its running verifications."""
        await self._write(task_id, _ops.abort_task)
        for scope in list(self._verifying.get(task_id, {}).values()):
            scope.cancel()
        await self._write_status(task_id)

    # -- status ----------------------------------------------------------------------

    async def task_status(self, task_id: str) -> TaskStatus:
        """The task's status now: parts by status, subtasks per node, bans, retries."""
        return await self._db.call(_ops.task_status, task_id, self._hooks.max_retries)

    def _touch(self, task_id: str) -> None:
        # The task changed: the status writer rewrites its file soon (at most every
        # STATUS_INTERVAL: the status aggregates the whole task).
        self._dirty.add(task_id)
        self._dirty_event.set()

    async def _write_status(self, task_id: str) -> float:
        # Returns the seconds the write held the database thread.
        self._dirty.discard(task_id)
        return await self._db.in_thread(self._status_to_file, task_id)

    def _status_to_file(self, task_id: str) -> float:
        # On the database thread: read and write in one trip, so that writes
        # (queued in order) never replace a newer status with an older one.
        start = time.perf_counter()
        try:
            status = self._db.run(_ops.task_status, task_id, self._hooks.max_retries)
            write_task_status(self._work_dir / task_id, status)
        except (OSError, TaskNotFound) as exc:  # the task's folder is gone: nothing to show
            log.debug("status of task %r not written: %s", task_id, exc)
        return time.perf_counter() - start

    async def write_statuses(self) -> float:
        """Write the status file of every task changed since the last write; return the
        seconds the writes took."""
        spent = 0.0
        for task_id in list(self._dirty):
            spent += await self._write_status(task_id)
        return spent

    async def status_writer(self) -> None:
        """Keep the tasks' status files fresh, until :meth:`stop_status_writer`.

        Writes at most every STATUS_INTERVAL, and rarer when a round of writes
        is slow (a huge task): the pause is at least STATUS_PAUSE_FACTOR times
        the last round, so the writes keep a small share of the database thread.
        """
        try:
            while not self._stopping:
                await self._dirty_event.wait()
                self._dirty_event = anyio.Event()
                spent = await self.write_statuses()
                with anyio.move_on_after(max(STATUS_INTERVAL, STATUS_PAUSE_FACTOR * spent)):
                    await self._stop_event.wait()
        finally:
            with anyio.CancelScope(shield=True):
                await self.write_statuses()

    def stop_status_writer(self) -> None:
        """Make :meth:`status_writer` write what is pending and return."""
        self._stopping = True
        self._stop_event.set()
        self._dirty_event.set()

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
        _faults.install(engine)  # nothing unless a crash test asks for it
        body_error: BaseException | None = None
        # The status writer is stopped by a flag, not cancelled: its last writes
        # run and no cancellation reaches the caller's task on a normal exit.
        async with anyio.create_task_group() as writer_group:
            writer_group.start_soon(engine.status_writer)
            try:
                async with anyio.create_task_group() as task_group:
                    engine.start_recovery(task_group, merges)
                    try:
                        yield engine
                    except BaseException as exc:
                        # Re-raised below, outside the task groups, so that the caller's
                        # errors do not come back wrapped in an exception group.
                        body_error = exc
                    finally:
                        task_group.cancel_scope.cancel()
            finally:
                engine.stop_status_writer()
        if body_error is not None:
            raise body_error
    finally:
        await to_thread.run_sync(db.close)
