"""What the transactions share: the rows they read, and the writes every verdict makes.

Each function is a plain function of a sqlite3 connection, run inside one
:meth:`Database.run` (one transaction). Lookups go by index only, so that a
call costs the same at 100 parts and at 1,000,000; where the planner, without
statistics, would rather walk a task's primary key, ``INDEXED BY`` pins the
index (and makes SQLite refuse a query the index could not serve). Errors
name the task and subtask ids.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from .._contexts import Verdict, VerifyResult
from .._exceptions import SubtaskNotFound, TaskNotFound, WrongState
from ._states import DECIDED, LIVE, SubtaskState, TaskState

log = logging.getLogger("golem_apps.engine")


@dataclass(frozen=True)
class TaskRow:
    """A task's state and counters."""

    state: TaskState
    failures: int
    total: int
    done: int
    redundancy: int = 1
    ban_after: int = 0


@dataclass(frozen=True)
class Handout:
    """A part handed out, with what NextSubtask must put in subtask_inputs."""

    part_name: str
    params: dict[str, Any]
    inputs: list[str]
    #: (resource name, dependency's subtask id, result file name)
    results: list[tuple[str, str, str]]

    @property
    def resources(self) -> list[str]:
        """Every resource name, task inputs first."""
        return [*self.inputs, *(name for name, _, _ in self.results)]


@dataclass(frozen=True)
class Pending:
    """A subtask about to be verified (or answered its stored verdict)."""

    part_name: str
    params: dict[str, Any]
    node_id: str
    part: int = 0
    state: SubtaskState = SubtaskState.COMPUTING
    decided: Verdict | None = None
    """The verdict stored for a decided subtask."""
    task: TaskRow | None = None
    """The task's row, as read with the subtask's (in the same transaction)."""


@dataclass(frozen=True)
class Outcome:
    """What recording a verdict did."""

    verdict: Verdict
    complete: bool = False
    """The task's last part is done: the merge is due."""
    banned: bool = False
    """A node was banned by it."""
    vote: bool = False
    """The result passed and waits for the vote of its part."""


def task_row(conn: sqlite3.Connection, task_id: str) -> TaskRow:
    """The task, or TaskNotFound."""
    row = conn.execute(
        "SELECT state, failures, total, done, redundancy, ban_after FROM tasks WHERE id = ?",
        (task_id,),
    ).fetchone()
    if row is None:
        raise TaskNotFound(f"task {task_id!r} not found")
    return TaskRow(TaskState(row[0]), *row[1:])


def live_task(conn: sqlite3.Connection, task_id: str) -> TaskRow:
    """The task, or WrongState once aborted or while it is still being created."""
    task = task_row(conn, task_id)
    check_live(task_id, task.state)
    return task


def check_live(task_id: str, state: TaskState) -> None:
    """WrongState for a task aborted or still being created."""
    if state is TaskState.ABORTED:
        raise WrongState(f"task {task_id!r} was aborted")
    if state is TaskState.CREATING:
        raise WrongState(f"task {task_id!r} is still being created")


def task_state(conn: sqlite3.Connection, task_id: str) -> TaskState:
    """The task's state (TaskNotFound for an unknown id)."""
    return task_row(conn, task_id).state


def subtask_row(
    conn: sqlite3.Connection, task_id: str, subtask_id: str
) -> tuple[int, str, SubtaskState]:
    """(part index, node id, state) of the subtask, or SubtaskNotFound."""
    row = conn.execute(
        "SELECT part, node, state FROM subtasks WHERE task = ? AND id = ?", (task_id, subtask_id)
    ).fetchone()
    if row is None:
        raise SubtaskNotFound(f"subtask {subtask_id!r} not found in task {task_id!r}")
    return int(row[0]), str(row[1]), SubtaskState(row[2])


def live_subtask(
    conn: sqlite3.Connection, task_id: str, subtask_id: str
) -> tuple[int, str, SubtaskState]:
    """(part, node, state) of a subtask whose result is still to come, else WrongState."""
    part, node, state = subtask_row(conn, task_id, subtask_id)
    if state not in LIVE:
        raise WrongState(
            f"subtask {subtask_id!r} of task {task_id!r} is {state}, not awaiting a result"
        )
    return part, node, state


def is_banned(conn: sqlite3.Connection, task_id: str, node_id: str) -> bool:
    """True iff the node is banned from the task."""
    row = conn.execute(
        "SELECT banned FROM nodes WHERE task = ? AND node = ?", (task_id, node_id)
    ).fetchone()
    return row is not None and row[0] is not None


_DEFAULT_VERDICT = {
    SubtaskState.SUCCESS: VerifyResult.SUCCESS,
    SubtaskState.FAILURE: VerifyResult.FAILURE,
    SubtaskState.SUPERSEDED: VerifyResult.SUCCESS,
    SubtaskState.VOIDED: VerifyResult.FAILURE,
}


def stored_verdict(state: SubtaskState, verdict: int | None, reason: str | None) -> Verdict:
    """The verdict of a decided subtask's row (older rows stored only the state)."""
    kind = _DEFAULT_VERDICT[state] if verdict is None else VerifyResult(verdict)
    return Verdict(kind, reason or "")


def verdict_of(conn: sqlite3.Connection, task_id: str, subtask_id: str) -> Verdict:
    """The verdict stored for a decided subtask (WrongState for any other)."""
    _, _, state = subtask_row(conn, task_id, subtask_id)
    if state not in DECIDED:
        raise WrongState(
            f"subtask {subtask_id!r} of task {task_id!r} is {state}, not awaiting a result"
        )
    verdict, reason = conn.execute(
        "SELECT verdict, reason FROM subtasks WHERE task = ? AND id = ?", (task_id, subtask_id)
    ).fetchone()
    return stored_verdict(state, verdict, reason)


# -- the writes of a verdict ------------------------------------------------------


def decide(
    conn: sqlite3.Connection, task_id: str, subtask_id: str, state: SubtaskState, verdict: Verdict
) -> None:
    """Store the subtask's verdict: every Verify of it answers this from now on."""
    conn.execute(
        "UPDATE subtasks SET state = ?, verdict = ?, reason = ? WHERE task = ? AND id = ?",
        (state, int(verdict.result), verdict.reason, task_id, subtask_id),
    )


def supersede(conn: sqlite3.Connection, task_id: str, part: int, subtask_id: str, why: str) -> None:
    """``subtask_id`` was verified (or voided) first: the other live copies of its
    hand-out (a backup, the hand-out it stands in for) are not used.

    Their verdict is SUCCESS, counted against nobody: their nodes did the work
    they were given.
    """
    others = conn.execute(
        "SELECT id FROM subtasks INDEXED BY subtasks_by_part WHERE task = ?1 AND part = ?2"
        " AND state IN ('computing', 'standby') AND coalesce(copy_of, id) = ("
        "  SELECT coalesce(copy_of, id) FROM subtasks WHERE task = ?1 AND id = ?3) AND id != ?3",
        (task_id, part, subtask_id),
    ).fetchall()
    verdict = Verdict(VerifyResult.SUCCESS, f"not used: {why}")
    for (other,) in others:
        decide(conn, task_id, other, SubtaskState.SUPERSEDED, verdict)


def strike(conn: sqlite3.Connection, task: TaskRow, task_id: str, node_id: str, why: str) -> bool:
    """A node's result failed verification: count it; True when that bans the node."""
    if not node_id:
        return False  # an anonymous node cannot be told apart from others
    conn.execute(
        "INSERT INTO nodes (task, node, failures) VALUES (?, ?, 1)"
        " ON CONFLICT (task, node) DO UPDATE SET failures = failures + 1",
        (task_id, node_id),
    )
    failures, banned = conn.execute(
        "SELECT failures, banned FROM nodes WHERE task = ? AND node = ?", (task_id, node_id)
    ).fetchone()
    if banned is None and 0 < task.ban_after <= failures:
        reason = f"{failures} failed verifications; last: {why}"
        conn.execute(
            "UPDATE nodes SET banned = ? WHERE task = ? AND node = ?", (reason, task_id, node_id)
        )
        log.warning("task %r: node %r banned: %s", task_id, node_id, reason)
        return True
    return False


def succeed(conn: sqlite3.Connection, task_id: str, part: int, subtask_id: str) -> bool:
    """The part is done with this subtask's result; True when that completed the task."""
    conn.execute(
        "UPDATE parts SET status = 'done', subtask = ? WHERE task = ? AND idx = ?",
        (subtask_id, task_id, part),
    )
    conn.execute(
        "UPDATE parts SET waiting = waiting - 1,"
        " status = CASE WHEN waiting = 1 AND status = 'blocked' THEN 'ready' ELSE status END"
        " WHERE task = ? AND idx IN (SELECT part FROM deps WHERE task = ? AND dep = ?)",
        (task_id, task_id, part),
    )
    done, total = conn.execute(
        "UPDATE tasks SET done = done + 1 WHERE id = ? RETURNING done, total", (task_id,)
    ).fetchone()
    if done == total:
        conn.execute("UPDATE tasks SET state = 'merging' WHERE id = ?", (task_id,))
        return True
    return False


def ready_or_blocked(conn: sqlite3.Connection, task_id: str, part: int) -> None:
    """The part has no live subtask any more: ready, or blocked behind a dependency."""
    conn.execute(
        "UPDATE parts SET status = CASE WHEN waiting = 0 THEN 'ready' ELSE 'blocked' END,"
        " subtask = NULL WHERE task = ? AND idx = ?",
        (task_id, part),
    )
