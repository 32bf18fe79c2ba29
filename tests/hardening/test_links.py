"""Symbolic links leading out of the work dir are never followed by the requestor:
a result linked out fails Verify naming the link; an input linked out is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from golem_apps.proto import golem_task_api as api

from . import apps
from .helpers import live_requestor, tree

pytestmark = pytest.mark.anyio


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("secret")
    return path


def create(task_id: str, **params: object) -> api.CreateTaskRequest:
    return api.CreateTaskRequest(task_id=task_id, task_params_json=json.dumps(params))


async def test_result_linked_out_of_the_work_dir_fails_verify(work_dir: Path, secret: Path) -> None:
    async with live_requestor(apps.requestor, work_dir) as live:
        await live.stub.create_task(create("t", n=1))
        await live.stub.next_subtask(api.NextSubtaskRequest(task_id="t", subtask_id="s1"))
        outputs = work_dir / "t" / "subtask_outputs" / "s1"
        outputs.mkdir(parents=True)
        (outputs / "result.txt").symlink_to(secret)
        reply = await live.stub.verify(api.VerifyRequest(task_id="t", subtask_id="s1"))
        assert reply.result == api.VerifyReplyVerifyResult.FAILURE
        assert "'result.txt' is a symbolic link leading out of the work dir" in reply.reason
        # The part is handed out again; nothing of the secret reached the task's folders.
        again = await live.stub.next_subtask(api.NextSubtaskRequest(task_id="t", subtask_id="s2"))
        assert again.subtask is not None
    assert not any("secret" in p.read_text() for p in (work_dir / "t").rglob("*.txt")
                   if p.is_file() and not p.is_symlink())  # fmt: skip


async def test_result_folder_linked_out_fails_verify(work_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "result.txt").write_text("secret")
    async with live_requestor(apps.requestor, work_dir) as live:
        await live.stub.create_task(create("t", n=1))
        await live.stub.next_subtask(api.NextSubtaskRequest(task_id="t", subtask_id="s1"))
        (work_dir / "t" / "subtask_outputs").mkdir(exist_ok=True)
        (work_dir / "t" / "subtask_outputs" / "s1").symlink_to(elsewhere)
        reply = await live.stub.verify(api.VerifyRequest(task_id="t", subtask_id="s1"))
        assert reply.result == api.VerifyReplyVerifyResult.FAILURE
        assert "symbolic link leading out of the work dir" in reply.reason


async def test_input_linked_out_of_the_work_dir_is_refused(work_dir: Path, secret: Path) -> None:
    inputs = work_dir / "t" / "task_inputs"
    inputs.mkdir(parents=True)
    (inputs / "data.bin").symlink_to(secret)
    (inputs / "real.bin").write_text("mine")
    (inputs / "alias.bin").symlink_to(inputs / "real.bin")  # stays in the work dir: fine
    async with live_requestor(apps.requestor, work_dir) as live:
        with pytest.raises(GRPCError) as info:
            await live.stub.create_task(create("t", n=1, resources=["data.bin"]))
        assert info.value.status is Status.INVALID_ARGUMENT
        assert "resource 'data.bin'" in (info.value.message or "")
        assert "links leading out of the work dir are refused" in (info.value.message or "")
        await live.stub.create_task(create("t", n=1, resources=["alias.bin"]))
        reply = await live.stub.next_subtask(api.NextSubtaskRequest(task_id="t", subtask_id="s1"))
        assert reply.subtask is not None and reply.subtask.resources == ["alias.bin"]
        assert (work_dir / "t" / "subtask_inputs" / "alias.bin").read_text() == "mine"


async def test_input_made_a_link_out_after_create_task_is_not_shipped(
    work_dir: Path, secret: Path
) -> None:
    inputs = work_dir / "t" / "task_inputs"
    inputs.mkdir(parents=True)
    (inputs / "data.bin").write_text("mine")
    async with live_requestor(apps.requestor, work_dir) as live:
        await live.stub.create_task(create("t", n=1, resources=["data.bin"]))
        (inputs / "data.bin").unlink()
        (inputs / "data.bin").symlink_to(secret)
        with pytest.raises(GRPCError) as info:
            await live.stub.next_subtask(api.NextSubtaskRequest(task_id="t", subtask_id="s1"))
        assert info.value.status is Status.INVALID_ARGUMENT
        assert "'data.bin'" in (info.value.message or "")
        assert "subtask_inputs/data.bin" not in tree(work_dir / "t")
