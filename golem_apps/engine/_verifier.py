"""Verify: the subtask's check (the default one, or the app's hook), the vote, the merge.

The first trip to the database thread finds what the Verify is (one of the
closed types of :data:`Checked`) and, without a verify hook, also does the
default check and records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from sqlite3 import Connection

from anyio import to_thread

from .._contexts import Verdict, VerifyContext
from .._contexts import VerifyResult as R
from .._exceptions import WrongState
from ..constants import SUBTASK_OUTPUTS_DIR
from . import _files, _rows, _verdicts
from ._base import Hooks
from ._db import Database
from ._merges import Merges
from ._pending import Changes
from ._policy import Ballot
from ._rows import Outcome, Pending
from ._states import SubtaskState, TaskState
from ._status import StatusWriter


@dataclass(frozen=True)
class Decided:
    """The subtask has a verdict already (a vote's, or a Verify whose reply was lost)."""

    verdict: Verdict
    merge_due: bool
    """The verdict is a success and the task's merge is still to do."""


@dataclass(frozen=True)
class HookDue:
    """The app's verify hook decides the result at ``path``."""

    pending: Pending
    path: Path


@dataclass(frozen=True)
class VoteDue:
    """The subtask's result waits for the vote of its part."""


@dataclass(frozen=True)
class Recorded:
    """The default check decided and its verdict is recorded."""

    outcome: Outcome


#: What Verify's first trip found.
Checked = Decided | HookDue | VoteDue | Recorded


class Verifier:
    """Runs the Verify calls of every task (see :meth:`SqliteEngine.verify`)."""

    def __init__(
        self,
        db: Database,
        work_dir: Path,
        hooks: Hooks,
        changes: Changes,
        merges: Merges,
        status: StatusWriter,
    ) -> None:
        self._db = db
        self._work_dir = work_dir
        self._hooks = hooks
        self._changes = changes
        self._merges = merges
        self._status = status

    async def verify(self, task_id: str, subtask_id: str) -> Verdict:
        """The subtask's verdict; the merge after the last part."""
        # Without a verify hook, one trip does it all; with one, a trip before and after it.
        checked = await self._changes.write(task_id, self._check, subtask_id)
        match checked:
            case Decided(verdict, merge_due):
                # A merge that failed (a full disk, say) or that a crash interrupted
                # runs again: the retried Verify answers once the outputs are in place.
                if merge_due:
                    await self._merges.merged(task_id)
                return verdict
            case VoteDue():
                return await self._vote(task_id, subtask_id)
            case HookDue(pending, path):
                assert self._hooks.verify is not None
                context = self._context(task_id, subtask_id, pending, path)
                verdict = await self._hooks.verify(context)
                record = _verdicts.record_verdict
                outcome = await self._changes.write(task_id, record, subtask_id, verdict, path.name)
            case Recorded(outcome):
                pass
        if outcome.vote:
            return await self._vote(task_id, subtask_id)
        await self._after(task_id, outcome)
        return outcome.verdict

    def _check(self, conn: Connection, task_id: str, subtask_id: str) -> Checked:
        # On the database thread, in one transaction: the subtask's state, its
        # result file and, without a verify hook, the default check and its record.
        hook = self._hooks.verify is not None
        pending = _verdicts.pending_verification(conn, task_id, subtask_id, with_part=hook)
        if pending.decided is not None:
            due = pending.decided.result is R.SUCCESS
            due = due and _rows.task_state(conn, task_id) is TaskState.MERGING
            return Decided(pending.decided, due)
        if pending.state is SubtaskState.AWAITING:
            return VoteDue()
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
        elif hook:
            return HookDue(pending, path)
        elif _files.default_verdict(path):
            verdict = Verdict(R.SUCCESS)
        else:
            verdict = Verdict(R.FAILURE, f"subtask {subtask_id!r}: result {path.name!r} is empty")
        result = path.name if path is not None else None
        record = _verdicts.record_verdict
        return Recorded(record(conn, task_id, subtask_id, verdict, result, pending))

    def _context(
        self, task_id: str, subtask_id: str, pending: Pending, path: Path
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

    async def _after(self, task_id: str, outcome: Outcome) -> None:
        # The status file shows a ban before Verify answers; a complete task merges.
        if outcome.banned:
            await self._status.write_now(task_id)
        else:
            self._status.touch(task_id)
        if outcome.complete:
            await self._merges.merge(task_id)

    async def _vote(self, task_id: str, subtask_id: str) -> Verdict:
        """A voted part: AWAITING_DATA until every copy has a result, then the vote."""
        while True:
            ballot = await self._db.call(_verdicts.ballot, task_id, subtask_id)
            if not isinstance(ballot, Ballot):
                results, copies = ballot
                return Verdict(
                    R.AWAITING_DATA, f"{results} of {copies} results in; the vote waits for all"
                )
            groups = await self._group(task_id, ballot)
            try:
                apply = _verdicts.apply_vote
                outcome = await self._changes.write(task_id, apply, subtask_id, ballot, groups)
            except WrongState:
                if await self._db.call(_verdicts.ballot, task_id, subtask_id) == ballot:
                    raise
                continue  # the ballot changed under us: vote on the new one
            await self._after(task_id, outcome)
            return outcome.verdict

    async def _group(self, task_id: str, ballot: Ballot) -> list[list[str]]:
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
            pendings = await self._db.call(_verdicts.pending_list, task_id, list(paths))
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
