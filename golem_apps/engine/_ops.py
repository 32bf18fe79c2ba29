"""The engine's transactions: plain functions of a sqlite3 connection.

Each runs inside one :meth:`Database.run` (one transaction, in a worker
thread) and looks rows up by index only, so that a call costs the same at 100
parts and at 100,000. Where the planner, without statistics, would rather walk
a task's primary key in order, ``INDEXED BY`` pins the index (and makes SQLite
refuse the query if the index could not serve it). Errors name the task and
subtask ids.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._contexts import Part, PartResult, Verdict, VerifyResult
from .._exceptions import (
    AlreadyExists,
    InvalidArgument,
    InvalidTask,
    SubtaskNotFound,
    TaskNotFound,
    WrongState,
)
from .._taskstatus import NodeStatus, TaskStatus
from .._validate import safe_name

log = logging.getLogger("golem_apps.engine")


@dataclass(frozen=True)
class TaskRow:
    """A task's state and counters."""

    state: str
    failures: int
    total: int
    done: int
    redundancy: int = 1
    ban_after: int = 0


@dataclass(frozen=True)
class Handout:
    """A part just handed out, with what NextSubtask must put in subtask_inputs."""

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
    """A subtask about to be verified."""

    part_name: str
    params: dict[str, Any]
    node_id: str
    part: int = 0
    state: str = "computing"
    """computing or standby (the hook must run), awaiting (a redundant result: vote
    again), or a decided state (success, failure, superseded, voided: answer the
    stored verdict again)."""
    decided: Verdict | None = None
    """The verdict stored for a decided subtask."""


@dataclass(frozen=True)
class Outcome:
    """What recording a verdict did: the verdict, whether the task is complete, whether
    a node was banned by it."""

    verdict: Verdict
    complete: bool = False
    banned: bool = False


# -- lookups ---------------------------------------------------------------


def task_row(conn: sqlite3.Connection, task_id: str) -> TaskRow:
    """The task, or TaskNotFound."""
    row = conn.execute(
        "SELECT state, failures, total, done, redundancy, ban_after FROM tasks WHERE id = ?",
        (task_id,),
    ).fetchone()
    if row is None:
        raise TaskNotFound(f"task {task_id!r} not found")
    return TaskRow(*row)


def live_task(conn: sqlite3.Connection, task_id: str) -> TaskRow:
    """The task, or WrongState once aborted or while it is still being created."""
    task = task_row(conn, task_id)
    if task.state == "aborted":
        raise WrongState(f"task {task_id!r} was aborted")
    if task.state == "creating":
        raise WrongState(f"task {task_id!r} is still being created")
    return task


def subtask_row(conn: sqlite3.Connection, task_id: str, subtask_id: str) -> tuple[int, str, str]:
    """(part index, node id, state) of the subtask, or SubtaskNotFound."""
    row = conn.execute(
        "SELECT part, node, state FROM subtasks WHERE task = ? AND id = ?", (task_id, subtask_id)
    ).fetchone()
    if row is None:
        raise SubtaskNotFound(f"subtask {subtask_id!r} not found in task {task_id!r}")
    return int(row[0]), str(row[1]), str(row[2])


def _computing(conn: sqlite3.Connection, task_id: str, subtask_id: str) -> tuple[int, str, str]:
    # (part, node, state) of a subtask whose result is still to come: computing or standby.
    part, node, state = subtask_row(conn, task_id, subtask_id)
    if state not in ("computing", "standby"):
        raise WrongState(
            f"subtask {subtask_id!r} of task {task_id!r} is {state}, not awaiting a result"
        )
    return part, node, state


#: States of a subtask with a verdict, answered again to every later Verify.
DECIDED = ("success", "failure", "superseded", "voided")
_DEFAULT_VERDICT = {"success": 0, "failure": 1, "superseded": 0, "voided": 1}


def _decide(
    conn: sqlite3.Connection, task_id: str, subtask_id: str, state: str, verdict: Verdict
) -> None:
    # Store the subtask's verdict: every Verify of it answers this from now on.
    conn.execute(
        "UPDATE subtasks SET state = ?, verdict = ?, reason = ? WHERE task = ? AND id = ?",
        (state, int(verdict.result), verdict.reason, task_id, subtask_id),
    )


def _supersede(
    conn: sqlite3.Connection, task_id: str, part: int, subtask_id: str, why: str
) -> None:
    # ``subtask_id`` was verified (or aborted) first: the other copies of its hand-out
    # (a backup and the hand-out it stands in for) are not used. Their verdict is
    # SUCCESS, counted against nobody: their nodes did the work they were given.
    root = conn.execute(
        "SELECT coalesce(copy_of, id) FROM subtasks WHERE task = ? AND id = ?",
        (task_id, subtask_id),
    ).fetchone()[0]
    others = conn.execute(
        "SELECT id FROM subtasks INDEXED BY subtasks_by_part WHERE task = ? AND part = ?"
        " AND state IN ('computing', 'standby') AND coalesce(copy_of, id) = ? AND id != ?",
        (task_id, part, root, subtask_id),
    ).fetchall()
    verdict = Verdict(VerifyResult.SUCCESS, f"not used: {why}")
    for (other,) in others:
        _decide(conn, task_id, other, "superseded", verdict)


def _release(conn: sqlite3.Connection, task_id: str, part: int, redundancy: int = 1) -> None:
    # The part's live subtask is gone: back to the ready pool, or blocked.
    if redundancy > 1:
        # One more copy to hand out; the part's other subtasks keep going.
        conn.execute(
            "UPDATE parts SET wanted = wanted + 1,"
            " status = CASE WHEN status = 'done' THEN 'done' WHEN waiting = 0 THEN 'ready'"
            " ELSE 'blocked' END WHERE task = ? AND idx = ?",
            (task_id, part),
        )
        return
    conn.execute(
        "UPDATE parts SET status = CASE WHEN waiting = 0 THEN 'ready' ELSE 'blocked' END,"
        " subtask = NULL WHERE task = ? AND idx = ?",
        (task_id, part),
    )


# -- CreateTask ------------------------------------------------------------


def begin_task(
    conn: sqlite3.Connection,
    task_id: str,
    params_json: str,
    redundancy: int = 1,
    ban_after: int = 0,
) -> None:
    """Record a task in state creating, or AlreadyExists."""
    try:
        conn.execute(
            "INSERT INTO tasks (id, state, params, redundancy, ban_after)"
            " VALUES (?, 'creating', ?, ?, ?)",
            (task_id, params_json, redundancy, ban_after),
        )
    except sqlite3.IntegrityError:
        raise AlreadyExists(f"task {task_id!r} already exists") from None


def _part_row(
    task_id: str, index: int, part: Part, inputs: frozenset[str]
) -> tuple[tuple[Any, ...], list[str]]:
    name = part.name if part.name is not None else str(index)
    if not isinstance(name, str):
        raise InvalidTask(f"task {task_id!r}: part {index} has a name that is not a string")
    safe_name(name, f"task {task_id!r}: name of part {index}")
    label = f"task {task_id!r}: part {name!r}"
    try:
        params = json.dumps(dict(part.params))
    except (TypeError, ValueError) as exc:
        raise InvalidTask(f"{label}: params are not a JSON object: {exc}") from None
    for field in ("resources", "depends_on"):
        if isinstance(getattr(part, field), str):
            raise InvalidTask(f"{label}: {field} must be a list of names, not a string")
    resources = [safe_name(r, f"{label}: resource") for r in part.resources]
    for resource in resources:
        if resource not in inputs:
            raise InvalidTask(
                f"{label}: resource {resource!r} is not a file in task_inputs "
                "(links leading out of the work dir are refused)"
            )
    depends_on = list(dict.fromkeys(part.depends_on))
    row = (task_id, index, name, params, json.dumps(resources), len(depends_on))
    return row, depends_on


def insert_parts(
    conn: sqlite3.Connection,
    task_id: str,
    start: int,
    parts: Sequence[Part],
    inputs: frozenset[str],
) -> None:
    """Record a batch of parts numbered from ``start`` (the task is in state creating).

    A dependency must name a part yielded earlier: that keeps the graph free
    of cycles and lets each batch be checked on its own.
    """
    redundancy = task_row(conn, task_id).redundancy
    rows: list[tuple[Any, ...]] = []
    deps: list[tuple[str, int, str, str, int]] = []
    for offset, part in enumerate(parts):
        try:
            row, depends_on = _part_row(task_id, start + offset, part, inputs)
        except InvalidArgument as exc:
            raise InvalidTask(str(exc)) from None
        rows.append((*row, redundancy))
        deps.extend((task_id, row[1], task_id, dep, row[1]) for dep in depends_on)
    try:
        conn.executemany(
            "INSERT INTO parts (task, idx, name, params, resources, status, waiting, wanted)"
            " VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?6 = 0 THEN 'ready' ELSE 'blocked' END, ?6,"
            " ?7)",
            rows,
        )
    except sqlite3.IntegrityError:
        raise InvalidTask(_duplicate_name(conn, task_id, rows)) from None
    before = conn.total_changes
    conn.executemany(
        "INSERT INTO deps (task, part, dep)"
        " SELECT ?, ?, idx FROM parts WHERE task = ? AND name = ? AND idx < ?",
        deps,
    )
    if conn.total_changes - before != len(deps):
        raise InvalidTask(_missing_dependency(conn, task_id, deps))
    conn.execute("UPDATE tasks SET total = total + ? WHERE id = ?", (len(rows), task_id))


def _duplicate_name(conn: sqlite3.Connection, task_id: str, rows: list[tuple[Any, ...]]) -> str:
    seen: set[str] = set()
    for row in rows:
        name = row[2]
        taken = conn.execute(
            "SELECT 1 FROM parts WHERE task = ? AND name = ?", (task_id, name)
        ).fetchone()
        if name in seen or taken:
            return f"task {task_id!r}: two parts are named {name!r}; part names must be unique"
        seen.add(name)
    return f"task {task_id!r}: part names must be unique"


def _missing_dependency(
    conn: sqlite3.Connection, task_id: str, deps: list[tuple[str, int, str, str, int]]
) -> str:
    for _, index, _, dep, _ in deps:
        found = conn.execute(
            "SELECT 1 FROM parts WHERE task = ? AND name = ? AND idx < ?", (task_id, dep, index)
        ).fetchone()
        if not found:
            name = conn.execute(
                "SELECT name FROM parts WHERE task = ? AND idx = ?", (task_id, index)
            ).fetchone()[0]
            return (
                f"task {task_id!r}: part {name!r} depends on {dep!r}, which is not a part "
                f"yielded before it"
            )
    return f"task {task_id!r}: unknown dependency"


def finish_task(conn: sqlite3.Connection, task_id: str) -> None:
    """The task's parts are all recorded: it becomes active."""
    conn.execute(
        "UPDATE tasks SET state = 'active' WHERE id = ? AND state = 'creating'", (task_id,)
    )


def delete_task(conn: sqlite3.Connection, task_id: str) -> None:
    """Forget a task whose creation failed."""
    for table in ("parts", "deps", "subtasks", "nodes"):
        conn.execute(f"DELETE FROM {table} WHERE task = ?", (task_id,))
    conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))


def recover(conn: sqlite3.Connection) -> list[str]:
    """At start-up: drop half-created tasks; return the tasks whose merge must (re)run.

    Every hand-out still computing is marked ``lost``: the process may have died
    after its commit and before its reply, and then the node never learned of it.
    Such a hand-out no longer counts as its node's live subtask, and once no part
    is ready its part is handed out again as a backup copy (see :func:`next_subtask`).
    """
    for (task_id,) in conn.execute("SELECT id FROM tasks WHERE state = 'creating'").fetchall():
        delete_task(conn, task_id)
    conn.execute(
        "UPDATE subtasks INDEXED BY current_by_node SET lost = 1"
        " WHERE state = 'computing' AND lost = 0"
    )
    return [row[0] for row in conn.execute("SELECT id FROM tasks WHERE state = 'merging'")]


# -- HasPendingSubtasks / NextSubtask ---------------------------------------


def has_pending(conn: sqlite3.Connection, task_id: str, max_retries: int) -> bool:
    """True iff a part is ready and the retry budget is not spent."""
    task = live_task(conn, task_id)
    if task.state != "active" or task.failures > max_retries:
        return False
    row = conn.execute(
        "SELECT 1 FROM parts INDEXED BY parts_by_status"
        " WHERE task = ? AND status = 'ready' LIMIT 1",
        (task_id,),
    ).fetchone()
    if row is not None:
        return True
    # Nothing ready: a hand-out a restart may have lost is due for a backup copy.
    row = conn.execute(
        "SELECT 1 FROM subtasks INDEXED BY lost_by_part"
        " WHERE task = ? AND state = 'computing' AND lost = 1 LIMIT 1",
        (task_id,),
    ).fetchone()
    return row is not None


def pending_or_none(conn: sqlite3.Connection, task_id: str, max_retries: int) -> bool | None:
    """:func:`has_pending`'s answer, or None where it raises (an unknown, aborted or
    half-created task)."""
    try:
        return has_pending(conn, task_id, max_retries)
    except (TaskNotFound, WrongState):
        return None


def next_subtask(
    conn: sqlite3.Connection, task_id: str, subtask_id: str, node_id: str, max_retries: int
) -> Handout | None:
    """Hand the first ready part out as ``subtask_id``, or None (the empty reply).

    With no part ready, a hand-out a restart may have lost (``lost``) is handed
    out again as a backup copy: the hand-out goes on standby and the first of
    the two verified wins. A call retried with the same subtask and node ids
    answers the same assignment again (AlreadyExists for another node).
    """
    task = live_task(conn, task_id)
    taken = conn.execute(
        "SELECT part, node, state FROM subtasks WHERE task = ? AND id = ?", (task_id, subtask_id)
    ).fetchone()
    if taken:
        part, node, state = taken
        replay = node == node_id and state not in ("aborted", "discarded")
        handout = _handout(conn, task_id, int(part)) if replay else None
        if handout is None:
            raise AlreadyExists(f"subtask {subtask_id!r} already exists in task {task_id!r}")
        # The same call again (its reply was lost): the same answer, even if the
        # subtask was verified since. A hand-out a restart may have lost is not lost.
        if state == "computing":
            conn.execute(
                "UPDATE subtasks SET lost = 0 WHERE task = ? AND id = ?", (task_id, subtask_id)
            )
        return handout
    if task.state != "active" or task.failures > max_retries:
        return None
    # One live subtask per node and task; an anonymous node ("") is not limited.
    # A hand-out a restart may have lost does not count.
    if (
        node_id
        and conn.execute(
            "SELECT 1 FROM subtasks INDEXED BY current_by_node"
            " WHERE task = ? AND node = ? AND state = 'computing' AND lost = 0 LIMIT 1",
            (task_id, node_id),
        ).fetchone()
    ):
        return None
    if node_id and is_banned(conn, task_id, node_id):
        return None
    distinct = task.redundancy > 1 and bool(node_id)
    if distinct:
        # Each copy of a part goes to a distinct node: skip the parts this node
        # already computed (or computes) a copy of.
        row = conn.execute(
            "SELECT idx FROM parts INDEXED BY parts_by_status"
            " WHERE task = ?1 AND status = 'ready' AND NOT EXISTS ("
            "  SELECT 1 FROM subtasks INDEXED BY subtasks_by_part"
            "  WHERE task = ?1 AND part = parts.idx AND node = ?2"
            "  AND state IN ('computing', 'standby', 'awaiting', 'success', 'failure'))"
            " ORDER BY idx LIMIT 1",
            (task_id, node_id),
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT idx FROM parts INDEXED BY parts_by_status"
            " WHERE task = ? AND status = 'ready' ORDER BY idx LIMIT 1",
            (task_id,),
        ).fetchone()
    if row is None:
        return _hand_out_backup(conn, task_id, subtask_id, node_id, distinct)
    index = int(row[0])
    if task.redundancy > 1:
        conn.execute(
            "UPDATE parts SET wanted = wanted - 1,"
            " status = CASE WHEN wanted = 1 THEN 'computing' ELSE status END"
            " WHERE task = ? AND idx = ?",
            (task_id, index),
        )
    else:
        conn.execute(
            "UPDATE parts SET status = 'computing', subtask = ? WHERE task = ? AND idx = ?",
            (subtask_id, task_id, index),
        )
    conn.execute(
        "INSERT INTO subtasks (task, id, part, node, state) VALUES (?, ?, ?, ?, 'computing')",
        (task_id, subtask_id, index, node_id),
    )
    return _fresh_handout(conn, task_id, index)


def _hand_out_backup(
    conn: sqlite3.Connection, task_id: str, subtask_id: str, node_id: str, distinct: bool
) -> Handout | None:
    # The first hand-out a restart may have lost (and this node may take) gets a
    # backup copy; the hand-out goes on standby.
    lost = conn.execute(
        "SELECT id, part, coalesce(copy_of, id) FROM subtasks AS s INDEXED BY lost_by_part"
        " WHERE task = ?1 AND state = 'computing' AND lost = 1 AND (NOT ?3 OR NOT EXISTS ("
        "  SELECT 1 FROM subtasks INDEXED BY subtasks_by_part"
        "  WHERE task = ?1 AND part = s.part AND node = ?2"
        "  AND state IN ('computing', 'standby', 'awaiting', 'success', 'failure')))"
        " ORDER BY part LIMIT 1",
        (task_id, node_id, distinct),
    ).fetchone()
    if lost is None:
        return None
    lost_id, index, root = lost
    conn.execute(
        "UPDATE subtasks SET state = 'standby', lost = 0 WHERE task = ? AND id = ?",
        (task_id, lost_id),
    )
    conn.execute(
        "INSERT INTO subtasks (task, id, part, node, state, copy_of)"
        " VALUES (?, ?, ?, ?, 'computing', ?)",
        (task_id, subtask_id, index, node_id, root),
    )
    conn.execute(
        "UPDATE parts SET subtask = CASE WHEN subtask = ? THEN ? ELSE subtask END"
        " WHERE task = ? AND idx = ?",
        (lost_id, subtask_id, task_id, index),
    )
    log.info("task %r: subtask %r is a backup copy of %r", task_id, subtask_id, lost_id)
    return _fresh_handout(conn, task_id, int(index))


def _fresh_handout(conn: sqlite3.Connection, task_id: str, index: int) -> Handout:
    handout = _handout(conn, task_id, index)
    assert handout is not None, "a ready or computing part has its dependencies done"
    return handout


def _handout(conn: sqlite3.Connection, task_id: str, index: int) -> Handout | None:
    # What NextSubtask answers for the part: its params and resources (the verified
    # results of its dependencies); None if a dependency is not done (any more).
    name, params, resources = conn.execute(
        "SELECT name, params, resources FROM parts WHERE task = ? AND idx = ?", (task_id, index)
    ).fetchone()
    results = conn.execute(
        "SELECT p.name, s.id, s.result FROM deps d"
        " JOIN parts p ON p.task = d.task AND p.idx = d.dep"
        " LEFT JOIN subtasks s ON s.task = p.task AND s.id = p.subtask AND p.status = 'done'"
        " WHERE d.task = ? AND d.part = ? ORDER BY d.dep",
        (task_id, index),
    ).fetchall()
    if any(dep_subtask is None for _, dep_subtask, _ in results):
        return None
    return Handout(
        name,
        json.loads(params),
        json.loads(resources),
        [(f"{dep}-{result}", dep_subtask, result) for dep, dep_subtask, result in results],
    )


def abort_handout(conn: sqlite3.Connection, task_id: str, subtask_id: str) -> None:
    """Undo a hand-out whose resources could not be placed."""
    row = conn.execute(
        "SELECT state FROM subtasks WHERE task = ? AND id = ?", (task_id, subtask_id)
    ).fetchone()
    if row is not None and row[0] == "computing":
        abort_subtask(conn, task_id, subtask_id)


# -- Verify ----------------------------------------------------------------


def _stored_verdict(state: str, verdict: int | None, reason: str | None) -> Verdict:
    kind = VerifyResult(_DEFAULT_VERDICT[state] if verdict is None else verdict)
    return Verdict(kind, reason or "")


def pending_verification(conn: sqlite3.Connection, task_id: str, subtask_id: str) -> Pending:
    """What the verify hook needs, or an error if the subtask awaits no verification.

    A decided subtask comes with its stored verdict (``decided``): a Verify
    retried after its reply was lost answers the same. In a redundant task a
    subtask may also be ``awaiting`` (its result waits for the vote).
    """
    task = live_task(conn, task_id)
    row = conn.execute(
        "SELECT part, node, state, verdict, reason FROM subtasks WHERE task = ? AND id = ?",
        (task_id, subtask_id),
    ).fetchone()
    if row is None:
        raise SubtaskNotFound(f"subtask {subtask_id!r} not found in task {task_id!r}")
    part, node, state, verdict, reason = int(row[0]), str(row[1]), str(row[2]), row[3], row[4]
    decided = _stored_verdict(state, verdict, reason) if state in DECIDED else None
    redundant_wait = state == "awaiting" and task.redundancy > 1
    if decided is None and not redundant_wait and state not in ("computing", "standby"):
        raise WrongState(
            f"subtask {subtask_id!r} of task {task_id!r} is {state}, not awaiting a result"
        )
    name, params = conn.execute(
        "SELECT name, params FROM parts WHERE task = ? AND idx = ?", (task_id, part)
    ).fetchone()
    return Pending(name, json.loads(params), node, part, state, decided)


def task_state(conn: sqlite3.Connection, task_id: str) -> str:
    """The task's state (TaskNotFound for an unknown id)."""
    return task_row(conn, task_id).state


def is_banned(conn: sqlite3.Connection, task_id: str, node_id: str) -> bool:
    """True iff the node is banned from the task."""
    row = conn.execute(
        "SELECT banned FROM nodes WHERE task = ? AND node = ?", (task_id, node_id)
    ).fetchone()
    return row is not None and row[0] is not None


def _strike(conn: sqlite3.Connection, task: TaskRow, task_id: str, node_id: str, why: str) -> bool:
    # A node's result failed verification: count it; True when that bans the node.
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
        _void_awaiting(conn, task, task_id, node_id)
        return True
    return False


def _void(
    conn: sqlite3.Connection, task: TaskRow, task_id: str, subtask_id: str, part: int, node: str
) -> Verdict:
    # A banned node's result never counts in a vote: its part wants another copy.
    # Not a failure of the task's budget, nor a strike (the node is banned already).
    verdict = Verdict(
        VerifyResult.FAILURE,
        f"voided: node {node!r} is banned from the task; its result does not count in the vote",
    )
    _decide(conn, task_id, subtask_id, "voided", verdict)
    _release(conn, task_id, part, task.redundancy)
    _supersede(conn, task_id, part, subtask_id, f"its copy {subtask_id!r} was voided")
    return verdict


def _void_awaiting(conn: sqlite3.Connection, task: TaskRow, task_id: str, node_id: str) -> None:
    # The node was just banned: its results still waiting for a vote are voided.
    rows = conn.execute(
        "SELECT id, part FROM subtasks INDEXED BY awaiting_by_node"
        " WHERE task = ? AND node = ? AND state = 'awaiting'",
        (task_id, node_id),
    ).fetchall()
    for subtask_id, part in rows:
        _void(conn, task, task_id, subtask_id, part, node_id)


def _fail(
    conn: sqlite3.Connection,
    task: TaskRow,
    task_id: str,
    subtask_id: str,
    part: int,
    node_id: str,
    verdict: Verdict,
    release: bool = True,
) -> bool:
    # The subtask's result is rejected; True when that banned its node.
    _decide(conn, task_id, subtask_id, "failure", verdict)
    if release:
        _release(conn, task_id, part, task.redundancy)
        _supersede(conn, task_id, part, subtask_id, f"its copy {subtask_id!r} was verified first")
    conn.execute("UPDATE tasks SET failures = failures + 1 WHERE id = ?", (task_id,))
    return _strike(conn, task, task_id, node_id, verdict.reason)


def _succeed(conn: sqlite3.Connection, task_id: str, part: int, subtask_id: str) -> bool:
    # The part is done with this subtask's result; True when that completed the task.
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
    conn.execute("UPDATE tasks SET done = done + 1 WHERE id = ?", (task_id,))
    task = task_row(conn, task_id)
    if task.done == task.total:
        conn.execute("UPDATE tasks SET state = 'merging' WHERE id = ?", (task_id,))
        return True
    return False


def record_verdict(
    conn: sqlite3.Connection, task_id: str, subtask_id: str, verdict: Verdict, result: str | None
) -> Outcome:
    """Record a verification's outcome (the hook's, on a computing or standby subtask).

    The first copy of a hand-out verified wins: the others are superseded. A
    standby hand-out that fails leaves its backup copy to go on. In a redundant
    task a result that passes becomes ``awaiting``: the vote
    (:func:`vote_candidates`, :func:`apply_vote`) decides it; a banned node's
    result is voided instead.
    """
    task = live_task(conn, task_id)
    part, node, state = _computing(conn, task_id, subtask_id)
    if verdict.result is VerifyResult.AWAITING_DATA:
        return Outcome(verdict)  # still computing: the node asks again later
    if verdict.result is not VerifyResult.SUCCESS or result is None:
        release = state == "computing"
        banned = _fail(conn, task, task_id, subtask_id, part, node, verdict, release)
        return Outcome(verdict, banned=banned)
    if task.redundancy > 1 and node and is_banned(conn, task_id, node):
        if state == "standby":  # its backup copy goes on
            voided = Verdict(VerifyResult.FAILURE, f"voided: node {node!r} is banned")
            _decide(conn, task_id, subtask_id, "voided", voided)
            return Outcome(voided)
        return Outcome(_void(conn, task, task_id, subtask_id, part, node))
    _supersede(conn, task_id, part, subtask_id, f"its copy {subtask_id!r} was verified first")
    conn.execute(
        "UPDATE subtasks SET lost = 0, result = ? WHERE task = ? AND id = ?",
        (result, task_id, subtask_id),
    )
    if task.redundancy > 1:
        conn.execute(
            "UPDATE subtasks SET state = 'awaiting' WHERE task = ? AND id = ?",
            (task_id, subtask_id),
        )
        return Outcome(Verdict(VerifyResult.AWAITING_DATA, "result recorded; awaiting the vote"))
    _decide(conn, task_id, subtask_id, "success", verdict)
    return Outcome(verdict, complete=_succeed(conn, task_id, part, subtask_id))


def stored_verdict(conn: sqlite3.Connection, task_id: str, subtask_id: str) -> Verdict:
    """The verdict stored for a decided subtask (WrongState for any other)."""
    _, _, state = subtask_row(conn, task_id, subtask_id)
    if state not in DECIDED:
        raise WrongState(
            f"subtask {subtask_id!r} of task {task_id!r} is {state}, not awaiting a result"
        )
    verdict, reason = conn.execute(
        "SELECT verdict, reason FROM subtasks WHERE task = ? AND id = ?", (task_id, subtask_id)
    ).fetchone()
    return _stored_verdict(state, verdict, reason)


@dataclass(frozen=True)
class Ballot:
    """A redundant part's results, when every copy handed out has one: time to vote."""

    part: int
    #: (subtask id, result file name) of each awaiting result, oldest first
    results: list[tuple[str, str]]
    quorum: int


def vote_candidates(
    conn: sqlite3.Connection, task_id: str, subtask_id: str
) -> Ballot | tuple[int, int]:
    """The ballot of the subtask's part if the vote is due, else (results in, copies out)."""
    task = live_task(conn, task_id)
    part, _, _ = subtask_row(conn, task_id, subtask_id)
    status, wanted = conn.execute(
        "SELECT status, wanted FROM parts WHERE task = ? AND idx = ?", (task_id, part)
    ).fetchone()
    rows = conn.execute(
        "SELECT id, state, result FROM subtasks INDEXED BY subtasks_by_part"
        " WHERE task = ? AND part = ? AND state IN ('computing', 'awaiting') ORDER BY id",
        (task_id, part),
    ).fetchall()
    results = [(row[0], row[2]) for row in rows if row[1] == "awaiting"]
    computing = len(rows) - len(results)
    if status == "done" or computing or wanted > 0:
        return len(results), len(results) + computing + max(int(wanted), 0)
    return Ballot(part, results, task.redundancy // 2 + 1)


def apply_vote(
    conn: sqlite3.Connection,
    task_id: str,
    subtask_id: str,
    ballot: Ballot,
    groups: list[list[str]],
) -> Outcome:
    """Record the vote on a ballot: ``groups`` are the agreeing subtask ids, largest first.

    With a group of at least ``quorum`` results the part is done with the
    group's first result; the others fail, outvoted. Without one, the part
    wants as many more copies as the largest group lacks. The returned
    verdict is ``subtask_id``'s.
    """
    task = live_task(conn, task_id)
    current = vote_candidates(conn, task_id, subtask_id)
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
    # Every verdict is stored; each is answered at its subtask's next Verify.
    for other, _ in ballot.results:
        if other in winners:
            verdict = Verdict(VerifyResult.SUCCESS, f"in the majority: {agree}")
            _decide(conn, task_id, other, "success", verdict)
        else:
            why = f"outvoted: its result differs from the majority ({agree})"
            loser = Verdict(VerifyResult.FAILURE, why)
            banned |= _fail(
                conn, task, task_id, other, ballot.part, nodes[other], loser, release=False
            )
    complete = _succeed(conn, task_id, ballot.part, best[0])
    return Outcome(stored_verdict(conn, task_id, subtask_id), complete=complete, banned=banned)


def merge_inputs(
    conn: sqlite3.Connection, task_id: str, outputs: Path, with_params: bool
) -> tuple[dict[str, Any], list[PartResult]]:
    """The task params and each part's result, in the parts' order.

    ``outputs`` is the task's subtask_outputs folder. Without ``with_params``
    (the default merge needs none) the parts' params are left empty.
    """
    params = conn.execute("SELECT params FROM tasks WHERE id = ?", (task_id,)).fetchone()[0]
    columns = "p.params" if with_params else "'{}'"
    rows = conn.execute(
        f"SELECT p.name, {columns}, s.id, s.result FROM parts p"
        " JOIN subtasks s ON s.task = p.task AND s.id = p.subtask"
        " WHERE p.task = ? ORDER BY p.idx",
        (task_id,),
    )
    results = [
        PartResult(name, json.loads(part_params), outputs / subtask_id / result)
        for name, part_params, subtask_id, result in rows
    ]
    return json.loads(params), results


def finish_merge(conn: sqlite3.Connection, task_id: str) -> None:
    """The merge is done: the task is finished (unless it was aborted meanwhile)."""
    conn.execute(
        "UPDATE tasks SET state = 'finished' WHERE id = ? AND state = 'merging'", (task_id,)
    )


# -- DiscardSubtasks / AbortSubtask / AbortTask -------------------------------


def discard(conn: sqlite3.Connection, task_id: str, subtask_ids: Sequence[str]) -> list[str]:
    """Discard the subtasks' results and, transitively, their dependents'.

    A given subtask that succeeded or is computing is discarded; dependents
    that were done or computing lose their subtask too (their input is gone);
    the parts become ready (or blocked). Returns exactly the discarded ids.
    """
    task = live_task(conn, task_id)
    if task.state not in ("active", "finished"):
        raise WrongState(f"task {task_id!r} is {task.state}: its results cannot be discarded now")
    stack: list[int] = []
    for subtask_id in subtask_ids:
        part, _, state = subtask_row(conn, task_id, subtask_id)
        if state in ("success", "computing", "standby", "awaiting"):
            stack.append(part)
    discarded: list[str] = []
    while stack:
        part = stack.pop()
        status = conn.execute(
            "SELECT status FROM parts WHERE task = ? AND idx = ?", (task_id, part)
        ).fetchone()[0]
        # The part's result and every copy still coming are discarded: it starts anew.
        copies = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM subtasks INDEXED BY subtasks_by_part WHERE task = ? AND part = ?"
                " AND state IN ('computing', 'standby', 'awaiting', 'success') ORDER BY id",
                (task_id, part),
            )
        ]
        conn.executemany(
            "UPDATE subtasks SET state = 'discarded' WHERE task = ? AND id = ?",
            [(task_id, copy) for copy in copies],
        )
        discarded.extend(copies)
        if task.redundancy > 1:
            conn.execute(
                "UPDATE parts SET wanted = ? WHERE task = ? AND idx = ?",
                (task.redundancy, task_id, part),
            )
        if status == "done":
            conn.execute("UPDATE tasks SET done = done - 1 WHERE id = ?", (task_id,))
            dependents = [
                row[0]
                for row in conn.execute(
                    "SELECT part FROM deps WHERE task = ? AND dep = ?", (task_id, part)
                )
            ]
            for dependent in dependents:
                conn.execute(
                    "UPDATE parts SET waiting = waiting + 1 WHERE task = ? AND idx = ?",
                    (task_id, dependent),
                )
            stack.extend(dependents)
        _release(conn, task_id, part)
    if discarded and task.state == "finished":
        # A node restarts subtasks of a finished task by discarding them: the
        # task reopens, and merges again once those parts are verified anew.
        conn.execute("UPDATE tasks SET state = 'active' WHERE id = ?", (task_id,))
    return discarded


def abort_subtask(conn: sqlite3.Connection, task_id: str, subtask_id: str) -> None:
    """The computing subtask is aborted; its part goes back to the ready pool.

    A standby hand-out (its backup copy goes on) is aborted alone; a backup
    copy's hand-out on standby is aborted with it.
    """
    task = live_task(conn, task_id)
    part, _, state = _computing(conn, task_id, subtask_id)
    conn.execute(
        "UPDATE subtasks SET state = 'aborted' WHERE task = ? AND id = ?", (task_id, subtask_id)
    )
    if state == "computing":
        conn.execute(
            "UPDATE subtasks SET state = 'aborted' WHERE task = ? AND part = ?"
            " AND state = 'standby' AND coalesce(copy_of, id) = ("
            "  SELECT coalesce(copy_of, id) FROM subtasks WHERE task = ? AND id = ?)",
            (task_id, part, task_id, subtask_id),
        )
        _release(conn, task_id, part, task.redundancy)


def abort_task(conn: sqlite3.Connection, task_id: str) -> None:
    """Mark the task aborted; its later calls answer WrongState."""
    live_task(conn, task_id)
    conn.execute("UPDATE tasks SET state = 'aborted' WHERE id = ?", (task_id,))


# -- status --------------------------------------------------------------------


def task_status(conn: sqlite3.Connection, task_id: str, max_retries: int) -> TaskStatus:
    """The task's status: parts by status, subtasks per node, bans.

    Aggregates over the task's parts and subtasks (index scans): the engine
    computes it on request and for the status file, never on every RPC.
    """
    task = task_row(conn, task_id)
    parts = {status: 0 for status in ("ready", "blocked", "computing", "done")}
    for status, count in conn.execute(
        "SELECT status, count(*) FROM parts INDEXED BY parts_by_status"
        " WHERE task = ? GROUP BY status",
        (task_id,),
    ):
        parts[status] = int(count)
    parts["total"] = task.total
    subtasks: dict[str, dict[str, int]] = {}
    for node, state, count in conn.execute(
        "SELECT node, state, count(*) FROM subtasks WHERE task = ? GROUP BY node, state",
        (task_id,),
    ):
        subtasks.setdefault(node, {})[state] = int(count)
    strikes = {
        node: (int(failures), banned)
        for node, failures, banned in conn.execute(
            "SELECT node, failures, banned FROM nodes WHERE task = ?", (task_id,)
        )
    }
    nodes = {
        node: NodeStatus(
            subtasks=subtasks.get(node, {}),
            failures=strikes.get(node, (0, None))[0],
            banned=strikes.get(node, (0, None))[1],
        )
        for node in sorted(subtasks.keys() | strikes.keys())
    }
    return TaskStatus(
        task_id=task_id,
        state=task.state,
        parts=parts,
        nodes=nodes,
        failures=task.failures,
        max_retries=max_retries,
        redundancy=task.redundancy,
        ban_after=task.ban_after,
    )


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
