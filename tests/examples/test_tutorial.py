"""docs/tutorial.md's code runs and gives the results it claims."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from golem_apps.testing import run_local
from tests.conftest import ROOT

TUTORIAL = ROOT / "docs" / "tutorial.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), re.DOTALL)


def test_the_tutorial_app_counts_primes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, _ = _blocks()
    # Step 3 adds two names to the import, then two functions.
    source = first.replace("    Part,\n", "    MergeContext,\n    Part,\n").replace(
        "    TaskContext,\n", "    TaskContext,\n    VerifyContext,\n"
    )
    (tmp_path / "tutorial_primes.py").write_text(source + "\n\n" + second)
    monkeypatch.syspath_prepend(str(tmp_path))
    app = importlib.import_module("tutorial_primes")
    result = run_local(
        app.requestor, app.provider, params={"limit": 10_000}, work_dir=tmp_path / "work"
    )
    # As the tutorial's Python example says; 1229 primes below 10000.
    assert (result.outputs_dir / "primes.txt").read_text() == "1229\n"
    assert result.parts == 8


def test_the_finished_example_is_the_tutorials_app() -> None:
    example = (ROOT / "examples" / "primes.py").read_text()
    _, second, _ = _blocks()
    assert second.strip() in example
    assert "def split(task: TaskContext) -> list[Part]:" in example
