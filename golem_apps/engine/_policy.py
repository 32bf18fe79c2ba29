"""The verification policy: every redundancy decision of a task, behind one seam.

A task either takes one result per part (:class:`SingleResult`) or lets K
results per part, from distinct nodes, vote (:class:`MajorityVote`). The
transactions ask the task's policy (:func:`policy_of`) how many copies a part
wants, which node may take one, what a hand-out, a lost copy, a discard, a
passing result and a ban do; they hold no redundancy branch of their own.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from abc import ABC, abstractmethod
from dataclasses import dataclass

from .._contexts import Verdict, VerifyResult
from .._exceptions import WrongState
from ._rows import (
    Outcome,
    TaskRow,
    decide,
    is_banned,
    live_task,
    ready_or_blocked,
    strike,
    subtask_row,
    succeed,
    supersede,
    verdict_of,
)
from ._states import PartStatus, SubtaskState

log = logging.getLogger("golem_apps.engine")


class VerificationPolicy(ABC):
    """How the results of a part decide it."""

    #: Subtasks per part whose results decide it.
    copies: int = 1
    #: Whether each copy of a part must go to a node that has none yet.
    distinct_nodes: bool = False

    @abstractmethod
    def take(self, conn: sqlite3.Connection, task_id: str, part: int, subtask_id: str) -> None:
        """A copy of the (ready) part was just handed out as ``subtask_id``."""

    @abstractmethod
    def give_back(self, conn: sqlite3.Connection, task_id: str, part: int) -> None:
        """A live copy of the part is gone (aborted, failed, voided): it wants another."""

    @abstractmethod
    def restart(self, conn: sqlite3.Connection, task_id: str, part: int) -> None:
        """Every copy of the part was discarded: it wants all its copies again."""

    @abstractmethod
    def passed(
        self,
        conn: sqlite3.Connection,
        task: TaskRow,
        task_id: str,
        subtask_id: str,
        part: int,
        node_id: str,
        state: SubtaskState,
        verdict: Verdict,
    ) -> Outcome:
        """A computing (or standby) subtask's result passed verification."""

    @abstractmethod
    def on_ban(self, conn: sqlite3.Connection, task: TaskRow, task_id: str, node_id: str) -> None:
        """The node was just banned from the task."""

    def fail(
        self,
        conn: sqlite3.Connection,
        task: TaskRow,
        task_id: str,
        subtask_id: str,
        part: int,
        node_id: str,
        verdict: Verdict,
        release: bool = True,
    ) -> bool:
        """The subtask's result is rejected (counted against the task and its node);
        True when that banned the node. ``release``: its copy wants a new subtask."""
        decide(conn, task_id, subtask_id, SubtaskState.FAILURE, verdict)
        if release:
            self.give_back(conn, task_id, part)
            why = f"its copy {subtask_id!r} was verified first"
            supersede(conn, task_id, part, subtask_id, why)
        conn.execute("UPDATE tasks SET failures = failures + 1 WHERE id = ?", (task_id,))
        banned = strike(conn, task, task_id, node_id, verdict.reason)
        if banned:
            self.on_ban(conn, task, task_id, node_id)
        return banned


class SingleResult(VerificationPolicy):
    """One result per part: the first that passes verification decides it."""

    def take(self, conn: sqlite3.Connection, task_id: str, part: int, subtask_id: str) -> None:
        conn.execute(
            "UPDATE parts SET status = 'computing', subtask = ? WHERE task = ? AND idx = ?",
            (subtask_id, task_id, part),
        )

    def give_back(self, conn: sqlite3.Connection, task_id: str, part: int) -> None:
        ready_or_blocked(conn, task_id, part)

    def restart(self, conn: sqlite3.Connection, task_id: str, part: int) -> None:
        pass  # one copy is all it ever wants

    def passed(
        self,
        conn: sqlite3.Connection,
        task: TaskRow,
        task_id: str,
        subtask_id: str,
        part: int,
        node_id: str,
        state: SubtaskState,
        verdict: Verdict,
    ) -> Outcome:
        supersede(conn, task_id, part, subtask_id, f"its copy {subtask_id!r} was verified first")
        decide(conn, task_id, subtask_id, SubtaskState.SUCCESS, verdict)
        return Outcome(verdict, complete=succeed(conn, task_id, part, subtask_id))

    def on_ban(self, conn: sqlite3.Connection, task: TaskRow, task_id: str, node_id: str) -> None:
        pass  # a subtask the node holds is still verified as usual: the check decides it


@dataclass(frozen=True)
class Ballot:
    """A voted part's results, when every copy handed out has one: time to vote."""

    part: int
    #: (subtask id, result file name) of each awaiting result, oldest first
    results: list[tuple[str, str]]
    quorum: int


class MajorityVote(VerificationPolicy):
    """K results per part from distinct nodes; a majority of agreeing results decides it.

    A banned node's results never count: those waiting for the vote when the
    ban comes, and any it sends later, are voided and their copies handed out
    again.
    """

    distinct_nodes = True

    def __init__(self, copies: int) -> None:
        self.copies = copies
        self.quorum = copies // 2 + 1

    def take(self, conn: sqlite3.Connection, task_id: str, part: int, subtask_id: str) -> None:
        conn.execute(
            "UPDATE parts SET wanted = wanted - 1,"
            " status = CASE WHEN wanted = 1 THEN 'computing' ELSE status END"
            " WHERE task = ? AND idx = ?",
            (task_id, part),
        )

    def give_back(self, conn: sqlite3.Connection, task_id: str, part: int) -> None:
        # One more copy to hand out; the part's other subtasks keep going.
        conn.execute(
            "UPDATE parts SET wanted = wanted + 1,"
            " status = CASE WHEN status = 'done' THEN 'done' WHEN waiting = 0 THEN 'ready'"
            " ELSE 'blocked' END WHERE task = ? AND idx = ?",
            (task_id, part),
        )

    def restart(self, conn: sqlite3.Connection, task_id: str, part: int) -> None:
        conn.execute(
            "UPDATE parts SET wanted = ? WHERE task = ? AND idx = ?", (self.copies, task_id, part)
        )

    def passed(
        self,
        conn: sqlite3.Connection,
        task: TaskRow,
        task_id: str,
        subtask_id: str,
        part: int,
        node_id: str,
        state: SubtaskState,
        verdict: Verdict,
    ) -> Outcome:
        if node_id and is_banned(conn, task_id, node_id):
            if state is SubtaskState.STANDBY:  # its backup copy goes on
                voided = Verdict(VerifyResult.FAILURE, f"voided: node {node_id!r} is banned")
                decide(conn, task_id, subtask_id, SubtaskState.VOIDED, voided)
                return Outcome(voided)
            return Outcome(self._void(conn, task_id, subtask_id, part, node_id))
        supersede(conn, task_id, part, subtask_id, f"its copy {subtask_id!r} was verified first")
        conn.execute(
            "UPDATE subtasks SET state = 'awaiting' WHERE task = ? AND id = ?",
            (task_id, subtask_id),
        )
        awaiting = Verdict(VerifyResult.AWAITING_DATA, "result recorded; awaiting the vote")
        return Outcome(awaiting, vote=True)

    def on_ban(self, conn: sqlite3.Connection, task: TaskRow, task_id: str, node_id: str) -> None:
        rows = conn.execute(
            "SELECT id, part FROM subtasks INDEXED BY awaiting_by_node"
            " WHERE task = ? AND node = ? AND state = 'awaiting'",
            (task_id, node_id),
        ).fetchall()
        for subtask_id, part in rows:
            self._void(conn, task_id, subtask_id, part, node_id)

    def _void(
        self, conn: sqlite3.Connection, task_id: str, subtask_id: str, part: int, node_id: str
    ) -> Verdict:
        # A banned node's result never counts in a vote: its part wants another copy.
        # Not a failure of the task's budget, nor a strike (the node is banned already).
        verdict = Verdict(
            VerifyResult.FAILURE,
            f"voided: node {node_id!r} is banned from the task; its result does not count"
            " in the vote",
        )
        decide(conn, task_id, subtask_id, SubtaskState.VOIDED, verdict)
        self.give_back(conn, task_id, part)
        supersede(conn, task_id, part, subtask_id, f"its copy {subtask_id!r} was voided")
        return verdict

    def ballot(
        self, conn: sqlite3.Connection, task_id: str, subtask_id: str
    ) -> Ballot | tuple[int, int]:
        """The ballot of the subtask's part if the vote is due, else (results in, copies out)."""
        part, _, _ = subtask_row(conn, task_id, subtask_id)
        status, wanted = conn.execute(
            "SELECT status, wanted FROM parts WHERE task = ? AND idx = ?", (task_id, part)
        ).fetchone()
        rows = conn.execute(
            "SELECT id, state, result FROM subtasks INDEXED BY subtasks_by_part"
            " WHERE task = ? AND part = ? AND state IN ('computing', 'awaiting') ORDER BY id",
            (task_id, part),
        ).fetchall()
        results = [(row[0], row[2]) for row in rows if row[1] == SubtaskState.AWAITING]
        computing = len(rows) - len(results)
        if status == PartStatus.DONE or computing or wanted > 0:
            return len(results), len(results) + computing + max(int(wanted), 0)
        return Ballot(part, results, self.quorum)

    def apply(
        self,
        conn: sqlite3.Connection,
        task: TaskRow,
        task_id: str,
        subtask_id: str,
        ballot: Ballot,
        groups: list[list[str]],
    ) -> Outcome:
        """Record the vote on a ballot: ``groups`` are the agreeing subtask ids, largest first.

        With a group of at least ``quorum`` results the part is done with the
        group's first result; the others fail, outvoted. Without one, the part
        wants as many more copies as the largest group lacks. The returned
        verdict is ``subtask_id``'s; every other is stored for its next Verify.
        """
        current = self.ballot(conn, task_id, subtask_id)
        if not isinstance(current, Ballot) or current.results != ballot.results:
            # Someone else voted meanwhile (or a copy was discarded): the caller asks again.
            raise WrongState(f"the vote on subtask {subtask_id!r} of task {task_id!r} is stale")
        total = len(ballot.results)
        best = groups[0] if groups else []
        if len(best) < ballot.quorum:
            more = ballot.quorum - len(best)
            conn.execute(
                "UPDATE parts SET wanted = ?,"
                " status = CASE WHEN waiting = 0 THEN 'ready' ELSE 'blocked' END"
                " WHERE task = ? AND idx = ?",
                (more, task_id, ballot.part),
            )
            reason = (
                f"no majority yet: at most {len(best)} of {total} results agree, "
                f"{ballot.quorum} needed; {more} more copies handed out"
            )
            log.info("task %r part %d: %s", task_id, ballot.part, reason)
            return Outcome(Verdict(VerifyResult.AWAITING_DATA, reason))
        winners = set(best)
        banned = False
        nodes = dict(
            conn.execute(
                "SELECT id, node FROM subtasks INDEXED BY subtasks_by_part"
                " WHERE task = ? AND part = ? AND state = 'awaiting'",
                (task_id, ballot.part),
            ).fetchall()
        )
        agree = f"{len(best)} of {total} results agree"
        for other, _ in ballot.results:
            if other in winners:
                won = Verdict(VerifyResult.SUCCESS, f"in the majority: {agree}")
                decide(conn, task_id, other, SubtaskState.SUCCESS, won)
            else:
                why = f"outvoted: its result differs from the majority ({agree})"
                lost = Verdict(VerifyResult.FAILURE, why)
                banned |= self.fail(
                    conn, task, task_id, other, ballot.part, nodes[other], lost, release=False
                )
        complete = succeed(conn, task_id, ballot.part, best[0])
        return Outcome(verdict_of(conn, task_id, subtask_id), complete=complete, banned=banned)


@functools.cache
def _policy(redundancy: int) -> VerificationPolicy:
    return SingleResult() if redundancy <= 1 else MajorityVote(redundancy)


def policy_of(task: TaskRow) -> VerificationPolicy:
    """The task's policy (its redundancy is stored with it)."""
    return _policy(task.redundancy)


def voting(conn: sqlite3.Connection, task_id: str) -> tuple[TaskRow, MajorityVote]:
    """The live task and its vote (WrongState for a task whose results do not vote)."""
    task = live_task(conn, task_id)
    policy = policy_of(task)
    if not isinstance(policy, MajorityVote):
        raise WrongState(f"task {task_id!r} takes one result per part: nothing to vote on")
    return task, policy
