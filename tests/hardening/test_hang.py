"""A requestor handler that hangs: Health and other tasks' calls are still answered."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from grpclib.exceptions import GRPCError

from golem_apps._handlers import HANDLER_THREADS
from golem_apps.constants import SUBTASK_OUTPUTS_DIR
from golem_apps.proto import golem_task_api as api

from . import apps
from .helpers import Live, live_requestor

pytestmark = pytest.mark.anyio

#: Generous bound on an answer while another handler hangs.
ANSWER_WITHIN = 10


@pytest.fixture
def release() -> Iterator[None]:
    apps.RELEASE.clear()
    yield
    apps.RELEASE.set()


async def run_task(live: Live, work_dir: Path, task_id: str, parts: int) -> None:
    """Drive a task to completion: every call answered within the bound."""
    stub = live.stub
    with anyio.fail_after(ANSWER_WITHIN):
        assert await live.healthy()
        await stub.create_task(
            api.CreateTaskRequest(task_id=task_id, task_params_json=json.dumps({"n": parts}))
        )
        for index in range(parts):
            pending = await stub.has_pending_subtasks(
                api.HasPendingSubtasksRequest(task_id=task_id)
            )
            assert pending.has_pending_subtasks
            subtask_id = f"{task_id}-s{index}"
            await stub.next_subtask(api.NextSubtaskRequest(task_id=task_id, subtask_id=subtask_id))
            out = work_dir / task_id / SUBTASK_OUTPUTS_DIR / subtask_id
            out.mkdir(parents=True)
            (out / f"{index}.txt").write_text("ok")
            reply = await stub.verify(api.VerifyRequest(task_id=task_id, subtask_id=subtask_id))
            assert reply.result == api.VerifyReplyVerifyResult.SUCCESS, reply
        assert await live.healthy()


async def test_hanging_handlers_do_not_block_others(work_dir: Path, release: None) -> None:
    async with live_requestor(apps.requestor, work_dir) as live:
        stub = live.stub
        # Task "hv": its verify hook hangs.
        await stub.create_task(api.CreateTaskRequest(task_id="hv", task_params_json='{"n": 1}'))
        (work_dir / "hv" / "hang_verify").write_text("")
        await stub.next_subtask(api.NextSubtaskRequest(task_id="hv", subtask_id="hv-s"))
        out = work_dir / "hv" / SUBTASK_OUTPUTS_DIR / "hv-s"
        out.mkdir(parents=True)
        (out / "r.txt").write_text("ok")
        answered: list[str] = []
        async with anyio.create_task_group() as group:

            async def hang(what: str, call: object) -> None:
                with contextlib.suppress(GRPCError):
                    await call  # type: ignore[misc]
                answered.append(what)

            # A sync split handler that hangs in CreateTask, and the hanging verify.
            group.start_soon(
                hang,
                "create",
                stub.create_task(
                    api.CreateTaskRequest(task_id="hc", task_params_json='{"hang": true}')
                ),
            )
            group.start_soon(
                hang, "verify", stub.verify(api.VerifyRequest(task_id="hv", subtask_id="hv-s"))
            )
            await anyio.sleep(0.5)
            # Other tasks still go all the way, and the hanging ones' tasks still answer.
            await run_task(live, work_dir, "other", 3)
            with anyio.fail_after(ANSWER_WITHIN):
                reply = await stub.has_pending_subtasks(api.HasPendingSubtasksRequest(task_id="hv"))
                assert not reply.has_pending_subtasks
            assert answered == []  # they really were hanging all along
            apps.RELEASE.set()
        assert sorted(answered) == ["create", "verify"]


async def test_more_hanging_handlers_than_threads(work_dir: Path, release: None) -> None:
    """Sync handlers hanging in every handler thread: the engine still serves other tasks."""
    hung = HANDLER_THREADS + 5
    async with live_requestor(apps.requestor, work_dir) as live:
        stub = live.stub
        await stub.create_task(api.CreateTaskRequest(task_id="other", task_params_json='{"n": 3}'))
        for number in range(hung):
            task_id = f"h{number}"
            await stub.create_task(
                api.CreateTaskRequest(task_id=task_id, task_params_json='{"n": 1}')
            )
            (work_dir / task_id / "hang_verify").write_text("")
            await stub.next_subtask(api.NextSubtaskRequest(task_id=task_id, subtask_id="s"))
            out = work_dir / task_id / SUBTASK_OUTPUTS_DIR / "s"
            out.mkdir(parents=True)
            (out / "r.txt").write_text("ok")
        async with anyio.create_task_group() as group:

            async def verify(task_id: str) -> None:
                with contextlib.suppress(GRPCError):  # h0's is answered: its task is aborted
                    await stub.verify(api.VerifyRequest(task_id=task_id, subtask_id="s"))

            for number in range(hung):
                group.start_soon(verify, f"h{number}")
            await anyio.sleep(1)
            with anyio.fail_after(ANSWER_WITHIN):
                assert await live.healthy()
                for index in range(3):
                    reply = await stub.has_pending_subtasks(
                        api.HasPendingSubtasksRequest(task_id="other")
                    )
                    assert reply.has_pending_subtasks
                    await stub.next_subtask(
                        api.NextSubtaskRequest(task_id="other", subtask_id=f"o{index}")
                    )
                await stub.abort_subtask(api.AbortSubtaskRequest(task_id="other", subtask_id="o0"))
                await stub.discard_subtasks(
                    api.DiscardSubtasksRequest(task_id="other", subtask_ids=["o1"])
                )
                await stub.abort_task(api.AbortTaskRequest(task_id="h0"))
            # (Calls that need a handler thread, CreateTask's split, wait for one.)
            apps.RELEASE.set()
