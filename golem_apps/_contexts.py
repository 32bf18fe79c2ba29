"""What the requestor's verify and merge handlers receive and return: verdicts, results.

Plain dataclasses, standard library only. Not on the provider's start-up
path (``golem_apps`` loads these names on first use); what nearly every app
names, TaskContext, Part and ComputeContext, is in ``_task``.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .constants import TASK_INPUTS_DIR, TASK_OUTPUTS_DIR

__all__ = [
    "MergeContext",
    "PartResult",
    "Verdict",
    "VerifyContext",
    "VerifyResult",
]


class VerifyResult(enum.IntEnum):
    """Outcome of a verification; the values are the wire values of VerifyReply.VerifyResult."""

    SUCCESS = 0
    FAILURE = 1
    AWAITING_DATA = 2
    INCONCLUSIVE = 3


@dataclass(frozen=True)
class Verdict:
    """What a verify handler may return: a result and a reason shown by the node."""

    result: VerifyResult
    reason: str = ""

    @classmethod
    def coerce(cls, value: object) -> Verdict:
        """Turn a verify handler's return value (bool, VerifyResult or Verdict) into a Verdict."""
        if isinstance(value, Verdict):
            return value
        if isinstance(value, VerifyResult):
            return cls(value)
        if isinstance(value, bool):
            if value:
                return cls(VerifyResult.SUCCESS)
            return cls(VerifyResult.FAILURE, "rejected by the verify handler")
        raise TypeError(
            f"a verify handler must return a bool, a VerifyResult or a Verdict, "
            f"not {type(value).__name__}"
        )


@dataclass(frozen=True)
class VerifyContext:
    """What the ``@requestor.verify`` handler receives: one subtask's result."""

    task_id: str
    subtask_id: str
    part_name: str
    params: dict[str, Any]
    task_dir: Path
    result_path: Path
    node_id: str = ""

    @property
    def inputs_dir(self) -> Path:
        """The task's ``task_inputs`` folder."""
        return self.task_dir / TASK_INPUTS_DIR


@dataclass(frozen=True)
class PartResult:
    """One part's verified result, as the ``@requestor.merge`` handler sees it."""

    name: str
    params: dict[str, Any]
    path: Path


@runtime_checkable
class PartResults(Protocol):
    """Every part's verified result, in the order the parts were yielded, read lazily.

    A task of a million parts is never held in memory: the results are read a
    batch at a time as they are iterated, each iteration from the start. A
    sync merge handler (run in a worker thread) iterates with ``for``; an
    async one with ``async for`` (a plain ``for`` on the event loop raises,
    since it would block the loop). ``len()`` is the number of parts.
    """

    def __iter__(self) -> Iterator[PartResult]: ...

    def __aiter__(self) -> AsyncIterator[PartResult]: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class MergeContext:
    """What the ``@requestor.merge`` handler receives once every part is verified.

    The handler writes the task's final results into ``outputs_dir``; when it
    returns, that folder must hold the results and nothing else.
    """

    task_id: str
    params: dict[str, Any]
    task_dir: Path
    results: PartResults
    """Every part's result in part order, streamed (see :class:`PartResults`)."""

    @property
    def outputs_dir(self) -> Path:
        """The task's ``task_outputs`` folder."""
        return self.task_dir / TASK_OUTPUTS_DIR
