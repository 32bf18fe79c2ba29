"""The requestor's start-up path: the generated (betterproto) messages only for RPC overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from golem_apps import RequestorClient
from tests.module_report import free_port, reporting_modules


@pytest.mark.anyio
async def test_a_requestor_without_overrides_never_imports_the_generated_messages(
    python: str, tmp_path: Path
) -> None:
    """Some 60 ms of every requestor's start-up (a run waits for it before anything else)."""
    port = free_port()
    serve = ["golem_apps.serve", "tests.apps.sample", "requestor", str(port)]
    async with reporting_modules(python, *serve, "--work-dir", str(tmp_path)) as report:
        for folder in ("task_inputs", "subtask_inputs", "task_outputs", "subtask_outputs"):
            (tmp_path / "t1" / folder).mkdir(parents=True)
        async with await RequestorClient.connect(port=port, timeout=30) as client:
            await client.create_task("t1", {"texts": ["a"]}, 0)
            assert await client.has_pending_subtasks("t1")
            assert await client.next_subtask("t1", "s1", "node") is not None
            await client.shutdown()
    modules = report.modules()
    assert "golem_apps.server._requestor" in modules  # the parsing works
    found = sorted(m for m in modules if m.startswith(("betterproto", "golem_apps.proto")))
    assert not found, f"the requestor path imported {found}"
