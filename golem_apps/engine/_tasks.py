"""The transactions of a task as a whole: CreateTask, start-up recovery, the merge's
inputs and end, AbortTask, and the task's status."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._contexts import PartResult
from .._exceptions import AlreadyExists, InvalidArgument, InvalidTask
from .._task import Part
from .._taskstatus import NodeStatus, TaskStatus
from .._validate import safe_name
from ._policy import policy_of
from ._rows import live_task, task_row
from ._states import PartStatus

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
    copies = policy_of(task_row(conn, task_id)).copies
    rows: list[tuple[Any, ...]] = []
    deps: list[tuple[str, int, str, str, int]] = []
    for offset, part in enumerate(parts):
        try:
            row, depends_on = _part_row(task_id, start + offset, part, inputs)
        except InvalidArgument as exc:
            raise InvalidTask(str(exc)) from None
        rows.append((*row, copies))
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
    blocked = sum(1 for row in rows if row[5])
    for status, count in (("ready", len(rows) - blocked), ("blocked", blocked)):
        conn.execute(
            "INSERT INTO part_counts (task, status, n) VALUES (?, ?, ?)"
            " ON CONFLICT (task, status) DO UPDATE SET n = n + excluded.n",
            (task_id, status, count),
        )


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
    for table in ("parts", "deps", "subtasks", "nodes", "part_counts", "subtask_counts"):
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


def task_params(conn: sqlite3.Connection, task_id: str) -> dict[str, Any]:
    """The task's params."""
    row = conn.execute("SELECT params FROM tasks WHERE id = ?", (task_id,)).fetchone()
    return dict(json.loads(row[0]))


def part_results(
    conn: sqlite3.Connection,
    task_id: str,
    outputs: Path,
    with_params: bool,
    after: int,
    limit: int,
) -> list[tuple[int, PartResult]]:
    """(index, result) of up to ``limit`` done parts after index ``after``, in part order.

    ``outputs`` is the task's subtask_outputs folder. Without ``with_params``
    (the default merge needs none) the parts' params are left empty.
    """
    columns = "p.params" if with_params else "'{}'"
    rows = conn.execute(
        f"SELECT p.idx, p.name, {columns}, s.id, s.result FROM parts p"
        " JOIN subtasks s ON s.task = p.task AND s.id = p.subtask"
        " WHERE p.task = ? AND p.idx > ? AND p.status = 'done' ORDER BY p.idx LIMIT ?",
        (task_id, after, limit),
    )
    return [
        (index, PartResult(name, json.loads(part_params), outputs / subtask_id / result))
        for index, name, part_params, subtask_id, result in rows
    ]


def shared_result_names(conn: sqlite3.Connection, task_id: str) -> frozenset[str]:
    """Result file names that more than one done part uses (the default merge prefixes them)."""
    rows = conn.execute(
        "SELECT s.result FROM parts p JOIN subtasks s ON s.task = p.task AND s.id = p.subtask"
        " WHERE p.task = ? AND p.status = 'done' GROUP BY s.result HAVING count(*) > 1",
        (task_id,),
    )
    return frozenset(row[0] for row in rows)


def finish_merge(conn: sqlite3.Connection, task_id: str) -> None:
    """The merge is done: the task is finished (unless it was aborted meanwhile)."""
    conn.execute(
        "UPDATE tasks SET state = 'finished' WHERE id = ? AND state = 'merging'", (task_id,)
    )


def abort_task(conn: sqlite3.Connection, task_id: str) -> None:
    """Mark the task aborted; its later calls answer WrongState."""
    live_task(conn, task_id)
    conn.execute("UPDATE tasks SET state = 'aborted' WHERE id = ?", (task_id,))


# -- status --------------------------------------------------------------------


def task_status(conn: sqlite3.Connection, task_id: str, max_retries: int) -> TaskStatus:
    """The task's status: parts by status, subtasks per node, bans.

    Read from the counters the transactions keep (``part_counts``,
    ``subtask_counts``): the same cost at 100 parts and at 1,000,000.
    """
    task = task_row(conn, task_id)
    parts = {str(status): 0 for status in PartStatus}
    for status, count in conn.execute(
        "SELECT status, n FROM part_counts WHERE task = ?", (task_id,)
    ):
        parts[status] = int(count)
    parts["total"] = task.total
    subtasks: dict[str, dict[str, int]] = {}
    for node, state, count in conn.execute(
        "SELECT node, state, n FROM subtask_counts WHERE task = ? AND n > 0", (task_id,)
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
