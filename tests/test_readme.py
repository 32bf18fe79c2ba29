"""The README's example app really works: extracted, served and driven over the wire."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from golem_apps import ProviderClient, RequestorClient, serve_provider, serve_requestor
from golem_apps.constants import SUBTASK_OUTPUTS_DIR, TASK_OUTPUTS_DIR

from .conftest import ROOT


def readme_app(tmp_path: Path) -> ModuleType:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"```python\n(# upper\.py\n.*?)```", text, re.DOTALL)
    assert match, "the README lost its example app"
    assert len(match.group(1).splitlines()) <= 25
    path = tmp_path / "upper.py"
    path.write_text(match.group(1))
    spec = importlib.util.spec_from_file_location("upper", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.anyio
async def test_readme_example_runs_a_task(tmp_path: Path, work_dir: Path) -> None:
    app = readme_app(tmp_path)
    task_dir = work_dir / "t"
    provider_dir = tmp_path / "provider"
    provider_dir.mkdir()
    async with (
        serve_requestor(app.requestor, work_dir=work_dir) as server,
        await RequestorClient.connect(port=server.port) as client,
    ):
        await client.create_task("t", {"texts": ["hello"]})
        subtask = await client.next_subtask("t", "s1", "n")
        assert subtask is not None
        async with serve_provider(app.provider, work_dir=provider_dir) as provider:
            async with await ProviderClient.connect(port=provider.port) as computing:
                output = await computing.compute("t", "s1", subtask.params)
            assert await provider.wait() == 0
        target = task_dir / SUBTASK_OUTPUTS_DIR / "s1"
        target.mkdir(parents=True)
        (target / "result.txt").write_bytes((provider_dir / output).read_bytes())
        assert (await client.verify("t", "s1")).result.name == "SUCCESS"
    assert (task_dir / TASK_OUTPUTS_DIR / "result.txt").read_text() == "HELLO"
