"""What the requestor tells an app's listeners: one :class:`Event` per step of a task."""

from __future__ import annotations

from dataclasses import dataclass, field
from time import time

#: The kinds of event, in the order a task's life usually shows them.
EVENT_KINDS = (
    "task_created",
    "subtask_assigned",
    "subtask_verified",
    "subtask_failed",
    "subtask_aborted",
    "task_aborted",
    "task_finished",
)


@dataclass(frozen=True)
class Event:
    """One step of a task, as given to listeners registered with ``@requestor.on(kind)``.

    ``kind`` is one of :data:`EVENT_KINDS`: ``task_created`` (CreateTask
    succeeded), ``subtask_assigned`` (NextSubtask handed a subtask to
    ``node_id``), ``subtask_verified`` (Verify answered SUCCESS),
    ``subtask_failed`` (Verify answered FAILURE or INCONCLUSIVE, with the
    ``reason``), ``subtask_aborted`` and ``task_aborted`` (AbortSubtask and
    AbortTask). ``time`` is the Unix time the event was emitted.
    """

    kind: str
    task_id: str
    subtask_id: str = ""
    node_id: str = ""
    reason: str = ""
    time: float = field(default_factory=time)
