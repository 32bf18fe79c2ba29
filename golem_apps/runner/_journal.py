"""The runner's own records in its work dir, as a node keeps its database.

``<work dir>/runner/task.json`` names the task the work dir holds (its id,
its params, whether CreateTask answered, whether it ended), so that a rerun
on the same work dir continues an unfinished task instead of starting over.
``<work dir>/runner/subtasks.jsonl`` has a line per step of each subtask:

- ``asked``, written *before* NextSubtask: the requestor may hand it out even
  if the runner dies before the reply;
- ``shipped``: its result is in the requestor's ``subtask_outputs``;
- ``settled``: it has its verdict (``verified`` says which) or was aborted.

A rerun aborts the subtasks that were out (asked, never shipped) and
verifies those shipped but never settled. Every function here blocks: call
them through ``anyio.to_thread``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RUNNER_DIR = "runner"
TASK_FILE = "task.json"
JOURNAL_FILE = "subtasks.jsonl"

ASKED = "asked"
SHIPPED = "shipped"
SETTLED = "settled"


@dataclass
class TaskRecord:
    """Which task a work dir holds, and how far it got."""

    task_id: str
    params: dict[str, Any]
    created: bool = False
    """CreateTask answered."""
    ended: bool = False
    """The task finished, failed or was aborted: a rerun starts a new one."""


def load_task(root: Path) -> TaskRecord | None:
    """The work dir's task record; None when there is none (or it is unreadable)."""
    try:
        data = json.loads((root / RUNNER_DIR / TASK_FILE).read_text(encoding="utf-8"))
        return TaskRecord(
            task_id=str(data["task_id"]),
            params=dict(data["params"]),
            created=bool(data.get("created", False)),
            ended=bool(data.get("ended", False)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_task(root: Path, record: TaskRecord) -> None:
    """Write the record atomically (a temporary file renamed in)."""
    folder = root / RUNNER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f".{TASK_FILE}.tmp"
    temp.write_text(json.dumps(asdict(record), sort_keys=True), encoding="utf-8")
    temp.replace(folder / TASK_FILE)


@dataclass(frozen=True)
class Unsettled:
    """A subtask an earlier run left without a verdict."""

    subtask_id: str
    node_id: str
    shipped: bool
    """Its result reached subtask_outputs: verify it rather than abort it."""


class Journal:
    """Appends the steps of the task's subtasks (see the module docstring)."""

    def __init__(self, root: Path, task_id: str) -> None:
        # The folder exists: save_task made it.
        self.path = root / RUNNER_DIR / JOURNAL_FILE
        self._task_id = task_id

    def _append(self, entry: dict[str, Any]) -> None:
        line = json.dumps({"task": self._task_id, **entry}) + "\n"
        # One write of one line, O_APPEND: a killed runner leaves whole lines.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def asked(self, subtask_id: str, node_id: str) -> None:
        """NextSubtask for ``subtask_id`` is about to go out."""
        self._append({"id": subtask_id, "step": ASKED, "node": node_id})

    def shipped(self, subtask_id: str) -> None:
        """The subtask's result is in the requestor's subtask_outputs."""
        self._append({"id": subtask_id, "step": SHIPPED})

    def settled(self, subtask_id: str, verified: bool) -> None:
        """The subtask has its verdict (or was aborted): nothing more to do for it."""
        self._append({"id": subtask_id, "step": SETTLED, "verified": verified})

    def replay(self) -> tuple[list[Unsettled], int]:
        """The subtasks left unsettled, in order, and how many were verified."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return [], 0
        nodes: dict[str, str] = {}
        shipped: set[str] = set()
        verified = 0
        for line in lines:
            try:
                entry = json.loads(line)
                if entry["task"] != self._task_id:
                    continue
                subtask_id, step = str(entry["id"]), entry["step"]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
            if step == ASKED:
                nodes[subtask_id] = str(entry.get("node", ""))
            elif step == SHIPPED:
                shipped.add(subtask_id)
            elif step == SETTLED:
                nodes.pop(subtask_id, None)
                shipped.discard(subtask_id)
                verified += bool(entry.get("verified"))
        left = [Unsettled(sid, node, sid in shipped) for sid, node in nodes.items()]
        return left, verified
