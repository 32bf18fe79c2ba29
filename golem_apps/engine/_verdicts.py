"""The transactions of Verify: what a subtask's verification needs, and its verdict."""

from __future__ import annotations

import json
import sqlite3

from .._contexts import Verdict, VerifyResult
from .._exceptions import SubtaskNotFound, WrongState
from ._policy import Ballot, policy_of, voting
from ._rows import Outcome, Pending, live_subtask, live_task, stored_verdict, subtask_row
from ._states import DECIDED, LIVE, SubtaskState


def pending_verification(
    conn: sqlite3.Connection, task_id: str, subtask_id: str, with_part: bool = True
) -> Pending:
    """What the verify hook needs, or an error if the subtask awaits no verification.

    A decided subtask comes with its stored verdict (``decided``): a Verify
    retried after its reply was lost answers the same. In a redundant task a
    subtask may also be ``awaiting`` (its result waits for the vote).
    ``with_part=False``: without the part's name and params (the default
    check needs neither).
    """
    task = live_task(conn, task_id)
    row = conn.execute(
        "SELECT part, node, state, verdict, reason FROM subtasks WHERE task = ? AND id = ?",
        (task_id, subtask_id),
    ).fetchone()
    if row is None:
        raise SubtaskNotFound(f"subtask {subtask_id!r} not found in task {task_id!r}")
    part, node, state = int(row[0]), str(row[1]), SubtaskState(row[2])
    decided = stored_verdict(state, row[3], row[4]) if state in DECIDED else None
    if decided is None and state is not SubtaskState.AWAITING and state not in LIVE:
        raise WrongState(
            f"subtask {subtask_id!r} of task {task_id!r} is {state}, not awaiting a result"
        )
    name, params = "", "{}"
    if with_part:
        name, params = conn.execute(
            "SELECT name, params FROM parts WHERE task = ? AND idx = ?", (task_id, part)
        ).fetchone()
    return Pending(name, json.loads(params), node, part, state, decided, task)


def record_verdict(
    conn: sqlite3.Connection,
    task_id: str,
    subtask_id: str,
    verdict: Verdict,
    result: str | None,
    pending: Pending | None = None,
) -> Outcome:
    """Record a verification's outcome (the hook's, on a computing or standby subtask).

    The first copy of a hand-out verified wins: the others are superseded. A
    standby hand-out that fails leaves its backup copy to go on. In a redundant
    task a result that passes becomes ``awaiting``: the vote
    (:func:`vote_candidates`, :func:`apply_vote`) decides it; a banned node's
    result is voided instead. ``pending``: the subtask and task as
    :func:`pending_verification` read them in this same transaction (else
    they are read again).
    """
    if pending is not None and pending.task is not None and pending.state in LIVE:
        task, part, node, state = pending.task, pending.part, pending.node_id, pending.state
    else:
        task = live_task(conn, task_id)
        part, node, state = live_subtask(conn, task_id, subtask_id)
    if verdict.result is VerifyResult.AWAITING_DATA:
        return Outcome(verdict)  # still computing: the node asks again later
    policy = policy_of(task)
    if verdict.result is not VerifyResult.SUCCESS or result is None:
        # A standby hand-out's failure leaves its backup copy to go on.
        release = state is SubtaskState.COMPUTING
        banned = policy.fail(conn, task, task_id, subtask_id, part, node, verdict, release)
        return Outcome(verdict, banned=banned)
    conn.execute(
        "UPDATE subtasks SET lost = 0, result = ? WHERE task = ? AND id = ?",
        (result, task_id, subtask_id),
    )
    return policy.passed(conn, task, task_id, subtask_id, part, node, state, verdict)


def ballot(conn: sqlite3.Connection, task_id: str, subtask_id: str) -> Ballot | tuple[int, int]:
    """The ballot of the subtask's part if its vote is due, else (results in, copies out)."""
    _, vote = voting(conn, task_id)
    return vote.ballot(conn, task_id, subtask_id)


def apply_vote(
    conn: sqlite3.Connection,
    task_id: str,
    subtask_id: str,
    ballot: Ballot,
    groups: list[list[str]],
) -> Outcome:
    """Record the vote on a ballot (see :meth:`MajorityVote.apply`)."""
    task, vote = voting(conn, task_id)
    return vote.apply(conn, task, task_id, subtask_id, ballot, groups)


def pending_list(conn: sqlite3.Connection, task_id: str, subtask_ids: list[str]) -> list[Pending]:
    """Part name, params and node of each subtask (for the vote's comparison hook)."""
    pendings = []
    for subtask_id in subtask_ids:
        part, node, state = subtask_row(conn, task_id, subtask_id)
        name, params = conn.execute(
            "SELECT name, params FROM parts WHERE task = ? AND idx = ?", (task_id, part)
        ).fetchone()
        pendings.append(Pending(name, json.loads(params), node, part, state))
    return pendings
