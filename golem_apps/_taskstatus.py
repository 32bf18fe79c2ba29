"""A task's read-only status, as the requestor's engine reports it, writes it to disk and sends it.

Standard library only (and the generated light messages): tools read
``<work_dir>/<task_id>/status.json`` with :func:`read_task_status` without
importing the engine; clients ask the requestor's golem_apps.RequestorStatus
service, whose messages :func:`status_to_wire` and :func:`status_from_wire` convert.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import _wire

#: The status file's name, in the task's folder (beside task_outputs, never inside it).
STATUS_FILE = "status.json"
#: The requestor's golem_apps status service, beside RequestorApp on the same port.
STATUS_SERVICE = "golem_apps.RequestorStatus"

__all__ = ["STATUS_FILE", "NodeStatus", "TaskStatus", "read_task_status"]


@dataclass(frozen=True)
class NodeStatus:
    """What one opaque node id did in a task."""

    subtasks: dict[str, int] = field(default_factory=dict)
    """Its subtasks by state: computing, awaiting (a result waiting for the vote),
    success, failure, aborted, discarded."""
    failures: int = 0
    """Its results that failed verification (or lost a vote) in this task."""
    banned: str | None = None
    """Why the node is banned from the task, or None."""


@dataclass(frozen=True)
class TaskStatus:
    """A snapshot of one task: parts by state, subtasks per node, bans, retries.

    Get it from :meth:`golem_apps.RequestorServer.task_status` in-process, or
    from the ``status.json`` file the requestor keeps beside the task's
    folders (:func:`read_task_status`).
    """

    task_id: str
    state: str
    """creating, active, merging, finished or aborted."""
    parts: dict[str, int]
    """Parts by status: ready, blocked, computing, done; ``total`` counts them all."""
    nodes: dict[str, NodeStatus]
    """Per opaque node id."""
    failures: int
    """Failed verifications so far (each one uses a retry)."""
    max_retries: int
    """Failed verifications the task tolerates; past that nothing more is handed out."""
    redundancy: int = 1
    """Subtasks (on distinct nodes) that compute each part; they vote on the result."""
    ban_after: int = 0
    """Failed verifications after which a node is banned from the task (0: never)."""

    @property
    def bans(self) -> dict[str, str]:
        """Banned node ids and why."""
        return {node: s.banned for node, s in self.nodes.items() if s.banned is not None}

    @property
    def retries_left(self) -> int:
        """Failed verifications the task may still tolerate."""
        return max(0, self.max_retries + 1 - self.failures)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``status.json`` holds)."""
        data = asdict(self)
        data["bans"] = self.bans
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskStatus:
        """The inverse of :meth:`to_dict`."""
        nodes = {
            str(node): NodeStatus(
                subtasks={str(k): int(v) for k, v in value.get("subtasks", {}).items()},
                failures=int(value.get("failures", 0)),
                banned=value.get("banned"),
            )
            for node, value in data.get("nodes", {}).items()
        }
        return cls(
            task_id=str(data["task_id"]),
            state=str(data["state"]),
            parts={str(k): int(v) for k, v in data.get("parts", {}).items()},
            nodes=nodes,
            failures=int(data.get("failures", 0)),
            max_retries=int(data.get("max_retries", 0)),
            redundancy=int(data.get("redundancy", 1)),
            ban_after=int(data.get("ban_after", 0)),
        )


def write_task_status(task_dir: Path, status: TaskStatus) -> None:
    """Write ``<task_dir>/status.json`` atomically (a temporary file renamed in). Blocking."""
    target = task_dir / STATUS_FILE
    temp = task_dir / f".{STATUS_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        with temp.open("w", encoding="utf-8") as stream:
            json.dump(status.to_dict(), stream, indent=1, sort_keys=True)
        temp.replace(target)
    finally:
        temp.unlink(missing_ok=True)


def read_task_status(task_dir: str | Path) -> TaskStatus:
    """Read a task's ``status.json`` from its folder (``<work_dir>/<task_id>``). Blocking.

    Raises FileNotFoundError when the requestor has written none yet, and
    ValueError when the file is not a task status.
    """
    path = Path(task_dir) / STATUS_FILE
    with path.open(encoding="utf-8") as stream:
        try:
            data = json.load(stream)
        except ValueError as exc:
            raise ValueError(f"{path} does not hold a task status: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a task status")
    try:
        return TaskStatus.from_dict(data)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"{path} does not hold a task status: {exc}") from None


def status_to_wire(status: TaskStatus) -> _wire.TaskStatusReply:
    """The status as golem_apps.RequestorStatus sends it (``protos/golem_apps/status.proto``)."""
    parts = status.parts
    return _wire.TaskStatusReply(
        task_id=status.task_id,
        state=status.state,
        parts_total=parts.get("total", 0),
        parts_verified=parts.get("done", 0),
        parts=[
            _wire.StateCount(state=state, count=count)
            for state, count in sorted(parts.items())
            if state != "total"
        ],
        failures=status.failures,
        max_retries=status.max_retries,
        redundancy=status.redundancy,
        ban_after=status.ban_after,
        nodes=[
            _wire.NodeStatus(
                node_id=node_id,
                subtasks=[
                    _wire.StateCount(state=state, count=count)
                    for state, count in sorted(node.subtasks.items())
                ],
                failures=node.failures,
                banned=node.banned is not None,
                ban_reason=node.banned or "",
            )
            for node_id, node in status.nodes.items()
        ],
    )


def status_from_wire(reply: _wire.TaskStatusReply) -> TaskStatus:
    """The inverse of :func:`status_to_wire`."""
    parts = {entry.state: entry.count for entry in reply.parts}
    parts["total"] = reply.parts_total
    return TaskStatus(
        task_id=reply.task_id,
        state=reply.state,
        parts=parts,
        nodes={
            node.node_id: NodeStatus(
                subtasks={entry.state: entry.count for entry in node.subtasks},
                failures=node.failures,
                banned=node.ban_reason if node.banned else None,
            )
            for node in reply.nodes
        },
        failures=reply.failures,
        max_retries=reply.max_retries,
        redundancy=reply.redundancy,
        ban_after=reply.ban_after,
    )
