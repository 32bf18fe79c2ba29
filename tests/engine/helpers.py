"""Helpers of the engine tests: task folders, result files, an engine on a work dir."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from golem_apps import Part, TaskContext, Verdict, VerifyContext, VerifyResult
from golem_apps.constants import (
    SUBTASK_INPUTS_DIR,
    SUBTASK_OUTPUTS_DIR,
    TASK_INPUTS_DIR,
    TASK_OUTPUTS_DIR,
)
from golem_apps.engine import Engine, Hooks, open_engine
from golem_apps.engine._db import DB_NAME

TASK = "task-1"
#: The property tests' task: a diamond and a loner (B and C need A, D needs B and C).
DIAMOND = [
    Part(params={"p": "A"}, name="A"),
    Part(params={"p": "B"}, name="B", depends_on=["A"]),
    Part(params={"p": "C"}, name="C", depends_on=["A"]),
    Part(params={"p": "D"}, name="D", depends_on=["B", "C"]),
    Part(params={"p": "E"}, name="E"),
]


def task_dir(work_dir: Path, task_id: str = TASK) -> Path:
    """The task's folder with the four folders the node creates."""
    folder = work_dir / task_id
    for name in (TASK_INPUTS_DIR, SUBTASK_INPUTS_DIR, TASK_OUTPUTS_DIR, SUBTASK_OUTPUTS_DIR):
        (folder / name).mkdir(parents=True, exist_ok=True)
    return folder


def write_result(
    work_dir: Path, subtask_id: str, content: str, name: str = "result.txt", task_id: str = TASK
) -> Path:
    """Put a subtask's result where the node would: subtask_outputs/<subtask_id>/<name>."""
    folder = work_dir / task_id / SUBTASK_OUTPUTS_DIR / subtask_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(content)
    return path


def outputs(work_dir: Path, task_id: str = TASK) -> dict[str, str]:
    """task_outputs as {file name: text}."""
    folder = work_dir / task_id / TASK_OUTPUTS_DIR
    return {path.name: path.read_text() for path in sorted(folder.iterdir())}


async def aiter_parts(parts: Iterable[Part]) -> AsyncIterator[Part]:
    """The parts as the async iterator the engine consumes."""
    for part in parts:
        yield part


async def create(
    engine: Engine,
    work_dir: Path,
    parts: Iterable[Part],
    *,
    task_id: str = TASK,
    max_subtasks: int = 0,
    params: dict[str, Any] | None = None,
) -> None:
    """CreateTask with the given parts."""
    folder = task_dir(work_dir, task_id)
    context = TaskContext(task_id, params or {}, folder, max_subtasks)
    await engine.create_task(context, aiter_parts(parts))


async def verdict_from_content(result: VerifyContext) -> Verdict:
    """A verify hook driven by the result's text: S, F, I or A (+ anything); else FAILURE."""
    text = result.result_path.read_text()
    kinds = {
        "S": VerifyResult.SUCCESS,
        "F": VerifyResult.FAILURE,
        "I": VerifyResult.INCONCLUSIVE,
        "A": VerifyResult.AWAITING_DATA,
    }
    return Verdict(kinds.get(text[:1], VerifyResult.FAILURE), f"content {text!r}")


@asynccontextmanager
async def engine_on(work_dir: Path, hooks: Hooks | None = None) -> AsyncIterator[Engine]:
    """The engine of ``work_dir``."""
    async with open_engine(work_dir, hooks or Hooks()) as engine:
        yield engine


def query(work_dir: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Read the engine's database directly (a second, read-only connection)."""
    conn = sqlite3.connect(f"file:{work_dir / DB_NAME}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()
