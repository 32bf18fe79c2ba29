"""The seam between the RPC binding and the task bookkeeping: what each side sees."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .._contexts import MergeContext, Verdict, VerifyContext
from .._task import Part, TaskContext
from .._taskstatus import TaskStatus


@dataclass(frozen=True)
class Assignment:
    """A subtask handed out by NextSubtask: its params and the resource names to ship."""

    params: dict[str, Any]
    resources: list[str]


@dataclass(frozen=True)
class Hooks:
    """The app's hooks the engine calls, already wrapped to be awaitable.

    ``verify``/``merge`` None means the defaults: the result file exists and is
    not empty; copy each part's result into task_outputs.
    """

    verify: Callable[[VerifyContext], Awaitable[Verdict]] | None = None
    merge: Callable[[MergeContext], Awaitable[None]] | None = None
    max_retries: int = 3
    redundancy: int = 1
    """Subtasks per part, on distinct nodes, whose results vote (stored per task)."""
    ban_after: int = 0
    """Failed verifications after which a node is banned from a task (0: never)."""
    compare: Callable[[VerifyContext, VerifyContext], Awaitable[bool]] | None = None
    """Whether two results of a part agree; None: identical bytes."""
    finished: Callable[[str], Awaitable[None]] | None = None
    """Called with the task id once the task's merge is done (the task is finished)."""


class Engine(Protocol):
    """What the RequestorApp binding needs from the bookkeeping, one method per RPC."""

    async def create_task(self, task: TaskContext, parts: AsyncIterable[Part]) -> None:
        """Record a new task and its parts (consumed lazily); AlreadyExists on a known id."""

    async def has_pending_subtasks(self, task_id: str) -> bool:
        """True iff some part is ready to be handed out."""

    async def next_subtask(self, task_id: str, subtask_id: str, node_id: str) -> Assignment | None:
        """Hand a ready part to ``node_id`` as ``subtask_id``, or None (empty reply)."""

    async def verify(self, task_id: str, subtask_id: str) -> Verdict:
        """Verify the result in subtask_outputs/<subtask_id>/; merge after the last part."""

    async def discard_subtasks(self, task_id: str, subtask_ids: list[str]) -> list[str]:
        """Discard results (and their dependents'); return the ids actually discarded."""

    async def abort_task(self, task_id: str) -> None:
        """Stop the task's verifications and refuse its later calls."""

    async def abort_subtask(self, task_id: str, subtask_id: str) -> None:
        """Give the subtask's part back to the ready pool."""

    async def task_status(self, task_id: str) -> TaskStatus:
        """The task's status now (TaskNotFound for an unknown id)."""

    async def aclose(self) -> None:
        """Release files and connections."""
