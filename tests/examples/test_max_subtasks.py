"""Every example splits into at most ``task.max_subtasks`` parts by default, as a node user asks.

A node user's ``max_subtasks`` is the number of subtasks they ask for; the
requestor refuses a task split into more, saying what to change.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from examples import flaky, mandelbrot, mapreduce, primes, voting
from golem_apps import TaskFailed
from golem_apps.testing import run_local

SMALL = {
    primes: {"limit": 2000},
    flaky: {"n": 400, "fail_rate": 0},
    voting: {"n": 400},
    mandelbrot: {"size": 32, "max_iter": 8},
    mapreduce: {},
}


def inputs(app: ModuleType, folder: Path) -> list[Path]:
    if app is not mapreduce:
        return []
    files = []
    for i in range(5):
        path = folder / f"t{i}.txt"
        path.write_text(f"word{i} shared\n")
        files.append(path)
    return files


@pytest.mark.parametrize("app", list(SMALL), ids=lambda app: app.__name__)
@pytest.mark.parametrize("max_subtasks", [2, 3])
def test_the_default_split_fits_max_subtasks(
    app: ModuleType, max_subtasks: int, tmp_path: Path
) -> None:
    result = run_local(
        app.requestor, app.provider, params=SMALL[app], inputs=inputs(app, tmp_path),
        max_subtasks=max_subtasks, providers=3, work_dir=tmp_path / "work",
    )  # fmt: skip
    assert result.status is not None
    assert 1 <= result.status.parts["total"] <= max_subtasks
    assert any(result.outputs_dir.iterdir())


def test_without_max_subtasks_the_defaults_stand(tmp_path: Path) -> None:
    result = run_local(primes.requestor, primes.provider, params={"limit": 2000})
    assert result.status is not None and result.status.parts["total"] == 8


def test_asking_for_more_parts_than_subtasks_is_refused_saying_what_to_change() -> None:
    with pytest.raises(TaskFailed) as refused:
        run_local(primes.requestor, primes.provider, params={"parts": 4}, max_subtasks=2)
    message = str(refused.value)
    assert "more than max_subtasks_count=2 parts" in message
    assert "split into at most task.max_subtasks parts" in message


def test_mapreduce_needs_a_map_and_the_reduce(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_subtasks of 2 or more"):
        run_local(
            mapreduce.requestor, mapreduce.provider, inputs=inputs(mapreduce, tmp_path),
            max_subtasks=1,
        )  # fmt: skip
