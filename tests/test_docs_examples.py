"""The docs' example apps really work: extracted, served and driven over the wire."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from golem_apps import ProviderClient, RequestorClient, serve_provider, serve_requestor
from golem_apps.constants import SUBTASK_OUTPUTS_DIR, TASK_OUTPUTS_DIR

from .conftest import ROOT

pytestmark = pytest.mark.anyio


def docs_app(page: str, module: str, tmp_path: Path) -> ModuleType:
    """The page's ```python block that starts with ``# <module>.py``, imported."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    match = re.search(rf"```python\n(# {module}\.py\n.*?)```", text, re.DOTALL)
    assert match, f"docs/{page} lost its example app {module}.py"
    path = tmp_path / f"{module}.py"
    path.write_text(match.group(1))
    spec = importlib.util.spec_from_file_location(f"docs_{module}", path)
    assert spec and spec.loader
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


async def run_task(app: ModuleType, work_dir: Path, tmp_path: Path, params: dict[str, Any]) -> Path:
    """Drive one task to its end as a node would; return its task_outputs folder."""
    async with (
        serve_requestor(app.requestor, work_dir=work_dir) as server,
        await RequestorClient.connect(port=server.port) as client,
    ):
        await client.create_task("t", params)
        number = 0
        while await client.has_pending_subtasks("t"):
            subtask_id = f"s{number}"
            number += 1
            subtask = await client.next_subtask("t", subtask_id, "node")
            assert subtask is not None
            provider_dir = tmp_path / f"provider-{subtask_id}"
            (provider_dir / "subtask_inputs").mkdir(parents=True)
            async with serve_provider(app.provider, work_dir=provider_dir) as provider:
                async with await ProviderClient.connect(port=provider.port) as computing:
                    output = await computing.compute("t", subtask_id, subtask.params)
                assert await provider.wait() == 0
            target = work_dir / "t" / SUBTASK_OUTPUTS_DIR / subtask_id
            target.mkdir(parents=True)
            (target / Path(output).name).write_bytes((provider_dir / output).read_bytes())
            assert (await client.verify("t", subtask_id)).result.name == "SUCCESS"
    return work_dir / "t" / TASK_OUTPUTS_DIR


async def test_getting_started_app(tmp_path: Path, work_dir: Path) -> None:
    app = docs_app("index.md", "upper", tmp_path)
    outputs = await run_task(app, work_dir, tmp_path, {"texts": ["hello"]})
    assert [p.read_text() for p in outputs.iterdir()] == ["HELLO"]


async def test_typed_params_app(tmp_path: Path, work_dir: Path) -> None:
    app = docs_app("typed-params.md", "render", tmp_path)
    outputs = await run_task(app, work_dir, tmp_path, {"scene": "sky", "tiles": 2})
    assert sorted(p.read_text() for p in outputs.iterdir()) == ["sky, tile 0", "sky, tile 1"]
