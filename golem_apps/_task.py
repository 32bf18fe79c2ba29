"""What the split and compute handlers receive and return: tasks, parts, subtasks.

Plain dataclasses, standard library only. Nearly every app names these, so
they are on the provider's start-up path; what only the verify and merge
handlers use (verdicts, results) is in ``_contexts``, loaded on first use.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .constants import SUBTASK_INPUTS_DIR, TASK_INPUTS_DIR

__all__ = ["ComputeContext", "Part", "TaskContext"]


@dataclass(frozen=True)
class Part:
    """One part of a task, as returned (or yielded) by the ``@requestor.task`` handler.

    ``params`` becomes the subtask params JSON (an object): a dict, or a
    dataclass or pydantic model instance (serialized with pydantic; see typed
    params). ``resources`` are
    names of files in the task's ``task_inputs`` that the provider needs.
    ``name`` is a stable name, unique in the task (default: the part's index);
    ``depends_on`` names parts whose verified results this part needs: each
    reaches it as a resource named ``<dependency name>-<result file name>``.
    """

    params: Any = field(default_factory=dict)
    resources: Sequence[str] = ()
    name: str | None = None
    depends_on: Sequence[str] = ()


@dataclass(frozen=True)
class TaskContext:
    """What the ``@requestor.task`` handler receives: one task to split into parts."""

    task_id: str
    params: dict[str, Any]
    task_dir: Path
    max_subtasks: int

    @property
    def inputs_dir(self) -> Path:
        """The task's ``task_inputs`` folder: the task creator's files."""
        return self.task_dir / TASK_INPUTS_DIR


@dataclass(frozen=True)
class ComputeContext:
    """What the ``@provider.compute`` handler receives: one subtask to compute.

    ``subtask_dir`` (``<task dir>/<subtask_id>``) is created for the handler;
    the returned result file must lie inside ``task_dir``. A sync handler
    polls ``cancelled`` in long loops: it becomes true when the node shuts the
    provider down mid-computation. :meth:`progress` reports how far it got
    (and that it is alive) to golem_apps clients such as the local runner.
    """

    task_id: str
    subtask_id: str
    params: dict[str, Any]
    task_dir: Path
    _cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    _progress: Callable[[float, str], None] | None = field(default=None, repr=False)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress: ``fraction`` done (0 to 1) and an optional message.

        Each call is also a heartbeat: a runner watching with a heartbeat
        timeout replaces a provider whose reports stop. Cheap and thread-safe;
        call it as often as you like (watchers get the latest report). A Golem
        node does not read it.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise ValueError(f"ctx.progress(fraction=...) must be a number, got {fraction!r}")
        value = float(fraction)
        if math.isnan(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"ctx.progress(fraction=...) must be within [0, 1], got {fraction!r}")
        if self._progress is not None:
            self._progress(value, str(message))

    @property
    def subtask_dir(self) -> Path:
        """``<task dir>/<subtask_id>``: scratch and output space for this subtask."""
        return self.task_dir / self.subtask_id

    @property
    def inputs_dir(self) -> Path:
        """``<task dir>/subtask_inputs``: the resources the node shipped for this subtask."""
        return self.task_dir / SUBTASK_INPUTS_DIR

    @property
    def cancelled(self) -> bool:
        """True once the computation was cancelled (Shutdown or SIGTERM)."""
        return self._cancel_event.is_set()

    def cancel(self) -> None:
        """Set the cancellation flag (called by the provider server)."""
        self._cancel_event.set()
