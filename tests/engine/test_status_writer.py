"""The status writer pauses longer after slow writes (a huge task): they keep a small share
of the database thread. No time is measured: the writes report a duration and the
pause asked of anyio is checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from golem_apps import Part, read_task_status
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
