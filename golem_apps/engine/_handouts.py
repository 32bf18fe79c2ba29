"""The transactions of hand-outs: HasPendingSubtasks, NextSubtask (backup copies and
retries included), AbortSubtask and DiscardSubtasks."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from .._exceptions import AlreadyExists, TaskNotFound, WrongState
from ._policy import policy_of
from ._rows import (
    Handout,
    check_live,
    live_subtask,
    live_task,
    ready_or_blocked,
    subtask_row,
)
from ._states import LIVE, PartStatus, SubtaskState, TaskState

log = logging.getLogger("golem_apps.engine")

#: The states of a copy that make its node ineligible for another copy of the part
#: (distinct nodes): a superseded copy's node may have computed the part too, so a
#: backup copy of the same part never goes back to it.
_COPY_STATES = "('computing', 'standby', 'awaiting', 'success', 'failure', 'superseded')"


def has_pending(conn: sqlite3.Connection, task_id: str, max_retries: int) -> bool:
    """True iff a part is ready and the retry budget is not spent."""
    # One statement (every transaction that changes a task asks it): the task's
    # row, then a ready part, else a hand-out a restart may have lost (due for a
    # backup copy once nothing is ready).
    row = conn.execute(
        "SELECT state, failures, CASE"
        " WHEN EXISTS (SELECT 1 FROM parts INDEXED BY parts_by_status"
        "  WHERE task = ?1 AND status = 'ready') THEN 1"
        " WHEN EXISTS (SELECT 1 FROM subtasks INDEXED BY lost_by_part"
        "  WHERE task = ?1 AND state = 'computing' AND lost = 1) THEN 1"
        " ELSE 0 END FROM tasks WHERE id = ?1",
        (task_id,),
    ).fetchone()
    if row is None:
        raise TaskNotFound(f"task {task_id!r} not found")
    state = TaskState(row[0])
    check_live(task_id, state)
    return state is TaskState.ACTIVE and row[1] <= max_retries and bool(row[2])


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
        replay = node == node_id and state not in (SubtaskState.ABORTED, SubtaskState.DISCARDED)
        handout = _handout(conn, task_id, int(part)) if replay else None
        if handout is None:
            raise AlreadyExists(f"subtask {subtask_id!r} already exists in task {task_id!r}")
        # The same call again (its reply was lost): the same answer, even if the
        # subtask was verified since. A hand-out a restart may have lost is not lost.
        if state == SubtaskState.COMPUTING and not _holds_another(conn, task_id, node, subtask_id):
            conn.execute(
                "UPDATE subtasks SET lost = 0 WHERE task = ? AND id = ?", (task_id, subtask_id)
            )
        return handout
    if task.state is not TaskState.ACTIVE or task.failures > max_retries:
        return None
    # One live subtask per node and task; an anonymous node ("") is not limited.
    # A hand-out a restart may have lost does not count. A banned node gets nothing.
    if node_id and _busy_or_banned(conn, task_id, node_id):
        return None
    policy = policy_of(task)
    distinct = policy.distinct_nodes and bool(node_id)
    # The first ready part, with what its hand-out needs (one statement).
    if distinct:
        # Each copy of a part goes to a distinct node: skip the parts this node
        # already computed (or computes) a copy of.
        row = conn.execute(
            f"SELECT {_PART_COLUMNS} FROM parts INDEXED BY parts_by_status"
            " WHERE task = ?1 AND status = 'ready' AND NOT EXISTS ("
            "  SELECT 1 FROM subtasks INDEXED BY subtasks_by_part"
            "  WHERE task = ?1 AND part = parts.idx AND node = ?2"
            f"  AND state IN {_COPY_STATES})"
            " ORDER BY idx LIMIT 1",
            (task_id, node_id),
        ).fetchone()
    else:
        row = conn.execute(
            f"SELECT {_PART_COLUMNS} FROM parts INDEXED BY parts_by_status"
            " WHERE task = ?1 AND status = 'ready' ORDER BY idx LIMIT 1",
            (task_id,),
        ).fetchone()
    if row is None:
        return _hand_out_backup(conn, task_id, subtask_id, node_id, distinct)
    index = int(row[0])
    policy.take(conn, task_id, index, subtask_id)
    conn.execute(
        "INSERT INTO subtasks (task, id, part, node, state) VALUES (?, ?, ?, ?, 'computing')",
        (task_id, subtask_id, index, node_id),
    )
    handout = _handout_of(conn, task_id, index, row[1:])
    assert handout is not None, "a ready part has its dependencies done"
    return handout


def _busy_or_banned(conn: sqlite3.Connection, task_id: str, node_id: str) -> bool:
    # The node holds a live subtask of the task, or is banned from it.
    busy, banned = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM subtasks INDEXED BY current_by_node"
        "  WHERE task = ?1 AND node = ?2 AND state = 'computing' AND lost = 0),"
        " EXISTS (SELECT 1 FROM nodes WHERE task = ?1 AND node = ?2 AND banned IS NOT NULL)",
        (task_id, node_id),
    ).fetchone()
    return bool(busy or banned)


def _holds_another(conn: sqlite3.Connection, task_id: str, node_id: str, subtask_id: str) -> bool:
    # The node took another subtask since (this one looked lost): this one stays
    # maybe-lost, so that the node holds one live subtask at most.
    row = conn.execute(
        "SELECT 1 FROM subtasks INDEXED BY current_by_node"
        " WHERE task = ? AND node = ? AND state = 'computing' AND lost = 0 AND id != ? LIMIT 1",
        (task_id, node_id, subtask_id),
    ).fetchone()
    return row is not None


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
        f"  AND state IN {_COPY_STATES}))"
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


#: A part's columns a hand-out needs, in the order :func:`_handout_of` takes them.
_PART_COLUMNS = (
    "idx, name, params, resources,"
    " EXISTS (SELECT 1 FROM deps WHERE deps.task = parts.task AND deps.part = parts.idx)"
)


def _handout(conn: sqlite3.Connection, task_id: str, index: int) -> Handout | None:
    # What NextSubtask answers for the part: its params and resources (the verified
    # results of its dependencies); None if a dependency is not done (any more).
    row = conn.execute(
        f"SELECT {_PART_COLUMNS} FROM parts WHERE task = ? AND idx = ?", (task_id, index)
    ).fetchone()
    return _handout_of(conn, task_id, index, row[1:])


def _handout_of(
    conn: sqlite3.Connection, task_id: str, index: int, part: tuple[Any, ...]
) -> Handout | None:
    # ``part``: (name, params, resources, has dependencies) of the part's row.
    name, params, resources, has_deps = part
    results = []
    if has_deps:
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
    if row is not None and row[0] == SubtaskState.COMPUTING:
        abort_subtask(conn, task_id, subtask_id)


def discard(conn: sqlite3.Connection, task_id: str, subtask_ids: Sequence[str]) -> list[str]:
    """Discard the subtasks' results and, transitively, their dependents'.

    A given subtask that succeeded or is computing is discarded; dependents
    that were done or computing lose their subtask too (their input is gone);
    the parts become ready (or blocked). Returns exactly the discarded ids.
    """
    task = live_task(conn, task_id)
    if task.state not in (TaskState.ACTIVE, TaskState.FINISHED):
        raise WrongState(f"task {task_id!r} is {task.state}: its results cannot be discarded now")
    policy = policy_of(task)
    stack: list[int] = []
    for subtask_id in subtask_ids:
        part, _, state = subtask_row(conn, task_id, subtask_id)
        if state in (SubtaskState.SUCCESS, SubtaskState.AWAITING, *LIVE):
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
        policy.restart(conn, task_id, part)
        if status == PartStatus.DONE:
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
        ready_or_blocked(conn, task_id, part)
    if discarded and task.state is TaskState.FINISHED:
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
    part, _, state = live_subtask(conn, task_id, subtask_id)
    conn.execute(
        "UPDATE subtasks SET state = 'aborted' WHERE task = ? AND id = ?", (task_id, subtask_id)
    )
    if state is SubtaskState.COMPUTING:
        conn.execute(
            "UPDATE subtasks SET state = 'aborted' WHERE task = ? AND part = ?"
            " AND state = 'standby' AND coalesce(copy_of, id) = ("
            "  SELECT coalesce(copy_of, id) FROM subtasks WHERE task = ? AND id = ?)",
            (task_id, part, task_id, subtask_id),
        )
        policy_of(task).give_back(conn, task_id, part)
