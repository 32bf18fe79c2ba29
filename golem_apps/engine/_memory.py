"""In-memory bookkeeping: each part handed out once, re-handed after a failure.

A stand-in for the durable engine: state is lost when the process ends.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from pathlib import Path

from anyio import to_thread

from .._contexts import (
    MergeContext,
    Part,
    PartResult,
    TaskContext,
    Verdict,
    VerifyContext,
    VerifyResult,
)
from .._exceptions import AlreadyExists, InvalidTask, SubtaskNotFound, TaskNotFound, WrongState
from ..constants import SUBTASK_OUTPUTS_DIR, TASK_OUTPUTS_DIR
from ._base import Assignment, Hooks


@dataclass
class _Subtask:
    part: int
    node_id: str
    state: str = "computing"


@dataclass
class _Task:
    context: TaskContext
    parts: list[Part]
    names: list[str]
    ready: list[int]
    results: dict[int, Path] = field(default_factory=dict)
    subtasks: dict[str, _Subtask] = field(default_factory=dict)
    failures: int = 0
    aborted: bool = False


def _result_file(task_dir: Path, subtask_id: str) -> Path | None:
    folder = task_dir / SUBTASK_OUTPUTS_DIR / subtask_id
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return files[0] if files else None


def _copy_results(outputs: Path, results: list[PartResult]) -> None:
    for result in results:
        shutil.copyfile(result.path, outputs / result.path.name)


class MemoryEngine:
    """Keeps every task in memory; see :class:`golem_apps.engine.Engine`."""

    def __init__(self, work_dir: Path, hooks: Hooks) -> None:
        self._work_dir = work_dir
        self._hooks = hooks
        self._tasks: dict[str, _Task] = {}

    def _task(self, task_id: str) -> _Task:
        task = self._tasks.get(task_id)
        if task is None:
            raise TaskNotFound(f"task {task_id!r} not found")
        if task.aborted:
            raise WrongState(f"task {task_id!r} was aborted")
        return task

    def _subtask(self, task: _Task, subtask_id: str) -> _Subtask:
        subtask = task.subtasks.get(subtask_id)
        if subtask is None:
            raise SubtaskNotFound(
                f"subtask {subtask_id!r} not found in task {task.context.task_id!r}"
            )
        return subtask

    async def create_task(self, task: TaskContext, parts: AsyncIterable[Part]) -> None:
        if task.task_id in self._tasks:
            raise AlreadyExists(f"task {task.task_id!r} already exists")
        collected = [part async for part in parts]
        if task.max_subtasks > 0 and len(collected) > task.max_subtasks:
            raise InvalidTask(
                f"task {task.task_id!r}: the task handler returned {len(collected)} parts, "
                f"more than max_subtasks_count={task.max_subtasks}"
            )
        names = [part.name or str(index) for index, part in enumerate(collected)]
        self._tasks[task.task_id] = _Task(task, collected, names, list(range(len(collected))))

    async def has_pending_subtasks(self, task_id: str) -> bool:
        task = self._task(task_id)
        return bool(task.ready) and task.failures <= self._hooks.max_retries

    async def next_subtask(self, task_id: str, subtask_id: str, node_id: str) -> Assignment | None:
        task = self._task(task_id)
        if subtask_id in task.subtasks:
            raise AlreadyExists(f"subtask {subtask_id!r} already exists in task {task_id!r}")
        if not await self.has_pending_subtasks(task_id):
            return None
        index = task.ready.pop(0)
        task.subtasks[subtask_id] = _Subtask(index, node_id)
        part = task.parts[index]
        return Assignment(dict(part.params), list(part.resources))

    async def verify(self, task_id: str, subtask_id: str) -> Verdict:
        task = self._task(task_id)
        subtask = self._subtask(task, subtask_id)
        if subtask.state != "computing":
            raise WrongState(
                f"subtask {subtask_id!r} is {subtask.state}, not awaiting verification"
            )
        task_dir = task.context.task_dir
        path = await to_thread.run_sync(_result_file, task_dir, subtask_id)
        if path is None:
            verdict = Verdict(VerifyResult.FAILURE, f"no result file for subtask {subtask_id!r}")
        elif self._hooks.verify is not None:
            part = task.parts[subtask.part]
            verdict = await self._hooks.verify(
                VerifyContext(
                    task_id=task_id,
                    subtask_id=subtask_id,
                    part_name=task.names[subtask.part],
                    params=dict(part.params),
                    task_dir=task_dir,
                    result_path=path,
                    node_id=subtask.node_id,
                )
            )
        elif path.stat().st_size == 0:
            verdict = Verdict(VerifyResult.FAILURE, f"result of subtask {subtask_id!r} is empty")
        else:
            verdict = Verdict(VerifyResult.SUCCESS)
        await self._record(task, subtask, verdict, path)
        return verdict

    async def _record(
        self, task: _Task, subtask: _Subtask, verdict: Verdict, path: Path | None
    ) -> None:
        if verdict.result is VerifyResult.AWAITING_DATA:
            return
        if verdict.result is VerifyResult.SUCCESS and path is not None:
            subtask.state = "success"
            task.results[subtask.part] = path
            if len(task.results) == len(task.parts):
                await self._merge(task)
            return
        subtask.state = "failure"
        task.failures += 1
        task.ready.append(subtask.part)

    async def _merge(self, task: _Task) -> None:
        context = task.context
        results = [
            PartResult(task.names[i], dict(task.parts[i].params), task.results[i])
            for i in range(len(task.parts))
        ]
        merge_context = MergeContext(context.task_id, context.params, context.task_dir, results)
        if self._hooks.merge is not None:
            await self._hooks.merge(merge_context)
        else:
            await to_thread.run_sync(_copy_results, context.task_dir / TASK_OUTPUTS_DIR, results)

    async def discard_subtasks(self, task_id: str, subtask_ids: list[str]) -> list[str]:
        task = self._task(task_id)
        discarded = []
        for subtask_id in subtask_ids:
            subtask = task.subtasks.get(subtask_id)
            if subtask is None or subtask.state != "success":
                continue
            subtask.state = "discarded"
            task.results.pop(subtask.part, None)
            task.ready.append(subtask.part)
            discarded.append(subtask_id)
        return discarded

    async def abort_task(self, task_id: str) -> None:
        self._task(task_id).aborted = True

    async def abort_subtask(self, task_id: str, subtask_id: str) -> None:
        task = self._task(task_id)
        subtask = self._subtask(task, subtask_id)
        if subtask.state == "computing":
            subtask.state = "aborted"
            task.ready.append(subtask.part)

    async def aclose(self) -> None:
        self._tasks.clear()

    def __repr__(self) -> str:
        return f"MemoryEngine({self._work_dir!s}, tasks={len(self._tasks)})"
