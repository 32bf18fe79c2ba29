"""docs/tutorial.md's code runs and gives the results it claims."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from golem_apps.runner import RunResult
from golem_apps.testing import run_local
from tests.conftest import ROOT

TUTORIAL = ROOT / "docs" / "tutorial.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), re.DOTALL)


def test_the_tutorial_app_counts_primes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, third = _blocks()
    # Step 3 adds two names to the import, then two functions.
    source = first.replace("    Part,\n", "    MergeContext,\n    Part,\n").replace(
        "    TaskContext,\n", "    TaskContext,\n    VerifyContext,\n"
    )
    (tmp_path / "primes.py").write_text(source + "\n\n" + second)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "primes", raising=False)
    # Step 5 as written: it imports the tutorial's primes and asserts 1229 primes below 10000.
    namespace: dict[str, Any] = {}
    exec(third, namespace)
    result = namespace["result"]
    assert isinstance(result, RunResult) and result.parts == 8
    assert Path(namespace["primes"].__file__) == tmp_path / "primes.py"
    monkeypatch.delitem(sys.modules, "primes")
    # A node user asking for 3 subtasks gets 3 parts (and the same count).
    app = importlib.import_module("primes")
    result = run_local(app.requestor, app.provider, params={"limit": 10_000}, max_subtasks=3)
    assert result.parts == 3 and (result.outputs_dir / "primes.txt").read_text() == "1229\n"


def test_the_finished_example_is_the_tutorials_app() -> None:
    example = (ROOT / "examples" / "primes.py").read_text()
    _, second, _ = _blocks()
    assert second.strip() in example
    assert "def split(task: TaskContext) -> list[Part]:" in example
