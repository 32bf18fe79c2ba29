"""The map-reduce example: dependencies through the durable engine, results as resources."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from examples import mapreduce
from golem_apps.runner import RunResult, run_task
from tests.runner.test_run_task import Recorder

TEXTS = {
    "a.txt": "The cat sat on the mat.\nThe dog's bone.\n",
    "b.txt": "A cat, a dog; the END\n",
    "c.txt": "Élan vital, élan! 42 don't\n",
}


@pytest.mark.anyio
async def test_word_counts_over_several_files(tmp_path: Path) -> None:
    inputs = []
    for name, text in TEXTS.items():
        (tmp_path / name).write_text(text)
        inputs.append(tmp_path / name)
    recorder = Recorder()
    result = await run_task(
        "examples.mapreduce",
        inputs=inputs,
        providers=3,
        in_process=True,
        work_dir=tmp_path / "work",
        out=tmp_path / "out",
        reporter=recorder,
    )
    counts = json.loads((tmp_path / "out" / mapreduce.REDUCE_RESULT).read_text())
    expected = sum((mapreduce.count_words(text) for text in TEXTS.values()), Counter())
    assert counts == dict(expected)
    assert (counts["the"], counts["cat"], counts["élan"], counts["don't"]) == (4, 2, 2, 1)
    assert "42" not in counts
    assert (result.parts, result.subtasks) == (4, 4)
    # The reduce starts only once the three maps are verified...
    kinds = [kind for kind in recorder.kinds() if kind in ("started", "verified")]
    assert kinds[-2:] == ["started", "verified"]
    assert kinds[:-2].count("verified") == 3
    # ...and gets their results as resources "<dependency name>-<result file name>".
    shipped = {p.name for p in (tmp_path / "work" / "providers").glob("*/*/subtask_inputs/*")}
    assert {"map-0-counts.json", "map-1-counts.json", "map-2-counts.json"} <= shipped


@pytest.fixture
def golem_app() -> object:
    """The app golem_apps.testing's fixtures (golem_run, ...) run."""
    return mapreduce


def test_no_input_files_is_refused(golem_run: Callable[..., RunResult]) -> None:
    # The split's own exception, as the app raised it.
    with pytest.raises(ValueError, match="needs at least one input text file"):
        golem_run()


def test_one_file_is_one_map_and_the_reduce(
    golem_run: Callable[..., RunResult], tmp_path: Path
) -> None:
    (tmp_path / "only.txt").write_text("to be or not to be\n")
    result = golem_run(inputs=[tmp_path / "only.txt"])
    counts = json.loads((result.outputs_dir / mapreduce.REDUCE_RESULT).read_text())
    assert counts == {"to": 2, "be": 2, "or": 1, "not": 1}
    assert (result.parts, result.subtasks, result.failures) == (2, 2, ())
