"""Concurrent NextSubtask calls hand out each part exactly once."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from golem_apps import Part, RequestorClient, serve_requestor
from golem_apps.engine import Assignment

from ..apps.engine_app import requestor
from .helpers import TASK, create, engine_on

pytestmark = pytest.mark.anyio

PARTS = 40
CALLS = 300


async def test_concurrent_next_subtask_calls_hand_out_each_part_once(work_dir: Path) -> None:
    handed: list[Assignment] = []
    async with engine_on(work_dir) as engine:
        await create(engine, work_dir, [Part(params={"n": n}) for n in range(PARTS)])

        async def ask(k: int) -> None:
            assignment = await engine.next_subtask(TASK, f"s{k}", f"node{k}")
            if assignment is not None:
                handed.append(assignment)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for k in range(CALLS):
                    group.start_soon(ask, k)
        assert sorted(a.params["n"] for a in handed) == list(range(PARTS))
        assert not await engine.has_pending_subtasks(TASK)


async def test_concurrent_calls_over_the_wire(work_dir: Path) -> None:
    parts_seen: list[str] = []
    async with serve_requestor(requestor, work_dir=work_dir) as server:
        client = await RequestorClient.connect("127.0.0.1", server.port)
        async with client:
            await client.create_task(TASK, {"parts": PARTS - 1})

            async def ask(k: int) -> None:
                assignment = await client.next_subtask(TASK, f"s{k}", f"node{k}")
                if assignment is not None:
                    parts_seen.append(assignment.params["text"])

            with anyio.fail_after(60):
                async with anyio.create_task_group() as group:
                    for k in range(CALLS):
                        group.start_soon(ask, k)
    # The app's parts: "base" and t0..t38; those depending on base are not ready yet.
    assert len(parts_seen) == len(set(parts_seen))
    assert "base" in parts_seen
    assert sorted(parts_seen) == sorted(
        ["base", *(f"t{i}" for i in range(PARTS - 1) if i % 3 != 0)]
    )
