"""The status writer pauses longer after slow writes (a huge task): they keep a small share
of the database thread (no time is measured: the writes report a duration and the
pause asked of anyio is checked); a database error in a write stops nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from golem_apps import Part, TaskStatus, read_task_status
from golem_apps._taskstatus import STATUS_FILE
from golem_apps.engine import _tasks
from golem_apps.engine._status import STATUS_INTERVAL, STATUS_PAUSE_FACTOR, StatusWriter

from .helpers import TASK, create, engine_on

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("took", [0.001, 2.0])
async def test_the_pause_after_a_round_of_writes_follows_its_duration(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch, took: float
) -> None:
    pauses: list[float] = []
    written = anyio.Event()
    move_on_after = anyio.move_on_after
    to_file = StatusWriter._to_file

    def spy(delay: float, *args: Any, **kwargs: Any) -> anyio.CancelScope:
        pauses.append(delay)
        return move_on_after(delay, *args, **kwargs)

    def slow_write(writer: StatusWriter, task_id: str) -> float:
        to_file(writer, task_id)  # really written; reported as taking ``took``
        written.set()
        return took

    monkeypatch.setattr(anyio, "move_on_after", spy)
    monkeypatch.setattr(StatusWriter, "_to_file", slow_write)
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, [Part(), Part()])  # marks the task's status dirty
        with anyio.fail_after(10):
            await written.wait()
            while not pauses:
                await anyio.sleep(0.001)
        assert read_task_status(work_dir / TASK).parts["total"] == 2
    # A quick write: the usual interval; a slow one: the factor times its duration.
    assert pauses[0] == {0.001: STATUS_INTERVAL, 2.0: 2.0 * STATUS_PAUSE_FACTOR}[took]


async def test_a_database_error_in_a_status_write_is_retried_and_stops_nothing(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Reading a task's status fails twice (an I/O error of SQLite's): the requestor
    # goes on serving, warns once, and the file is written at a later round.
    real = _tasks.task_status
    calls = 0

    def failing_twice(conn: sqlite3.Connection, task_id: str, max_retries: int) -> TaskStatus:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise sqlite3.OperationalError("disk I/O error")
        return real(conn, task_id, max_retries)

    monkeypatch.setattr(_tasks, "task_status", failing_twice)
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, [Part(), Part()])
        status_file = work_dir / TASK / STATUS_FILE
        with anyio.fail_after(10):
            while not await anyio.to_thread.run_sync(status_file.exists):
                await anyio.sleep(0.01)
        assert read_task_status(work_dir / TASK).parts["total"] == 2
        assert await engine.has_pending_subtasks(TASK)  # the engine still answers
    assert calls >= 3
    warnings = [r for r in caplog.records if "not written" in r.getMessage()]
    assert len(warnings) == 1 and "disk I/O error" in warnings[0].getMessage()
