"""docs/beyond.md's example app runs as the page says: a vote per part, progress, a status."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from golem_apps.runner import Reporter, run_task

from ..conftest import ROOT


class Progress(Reporter):
    def __init__(self) -> None:
        self.messages: list[str] = []

    def progress(self, node_id: str, subtask_id: str, fraction: float, message: str) -> None:
        self.messages.append(message)


def mean(seed: int) -> float:
    rng = random.Random(seed)
    total = 0.0
    for _ in range(100_000):
        total += rng.random()
    return total / 100_000


@pytest.mark.anyio
async def test_the_votes_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "docs" / "beyond.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(# votes\.py\n.*?)```", text, re.DOTALL)
    assert match, "docs/beyond.md lost its example app votes.py"
    (tmp_path / "votes.py").write_text(match.group(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = Progress()
    result = await run_task(
        "votes",
        params={"parts": 3},
        providers=3,
        in_process=True,
        work_dir=tmp_path / "work",
        reporter=seen,
    )
    expected = sum(mean(seed) for seed in range(3)) / 3
    assert float((result.outputs_dir / "mean.txt").read_text()) == pytest.approx(expected)
    assert result.status is not None
    assert (result.status.redundancy, result.status.ban_after) == (3, 2)
    assert (result.parts, result.subtasks, result.failures) == (3, 9, ())
    assert seen.messages and all(re.fullmatch(r"\d+ samples", m) for m in seen.messages)
