"""Hostile ids, resource names, JSON and result paths: refused by name, nothing escapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from golem_apps import ProviderClient, serve_provider
from golem_apps._taskstatus import STATUS_FILE
from golem_apps._validate import RESERVED_NAMES
from golem_apps.engine._db import DB_NAME
from golem_apps.engine._files import MERGE_TMP_DIR
from golem_apps.proto import golem_task_api as api

from . import apps
from .helpers import live_requestor

pytestmark = pytest.mark.anyio

BAD_IDS = [
    "",
    ".",
    "..",
    "a/b",
    "../escape",
    "/tmp/absolute",
    "a\\b",
    "nul\x00here",
    "x" * 256,
    "é" * 128,  # 256 bytes in UTF-8
]


async def expect_invalid(call: Any, field: str) -> str:
    with pytest.raises(GRPCError) as info:
        await call
    assert info.value.status is Status.INVALID_ARGUMENT, info.value
    assert field in (info.value.message or ""), info.value.message
    return info.value.message or ""


#: Names of a task dir's (or the work dir's) own folders and files.
RESERVED_IDS = [
    "task_inputs",
    "subtask_inputs",
    "task_outputs",
    "subtask_outputs",
    STATUS_FILE,
    DB_NAME,
    MERGE_TMP_DIR,
    "task_api_server_key.pem",
    ".hidden",
]


def test_reserved_names_cover_the_files_golem_apps_writes() -> None:
    assert STATUS_FILE in RESERVED_NAMES
    assert DB_NAME.startswith(".") and MERGE_TMP_DIR.startswith(".")  # refused as dot files


@pytest.mark.parametrize("bad", BAD_IDS + RESERVED_IDS, ids=repr)
async def test_bad_ids_are_refused_naming_the_field(tmp_path: Path, bad: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    async with live_requestor(apps.requestor, work) as live:
        stub = live.stub
        await stub.create_task(api.CreateTaskRequest(task_id="good", task_params_json="{}"))
        await expect_invalid(
            stub.create_task(api.CreateTaskRequest(task_id=bad, task_params_json="{}")), "task_id"
        )
        for make in (
            lambda t, s: stub.next_subtask(api.NextSubtaskRequest(task_id=t, subtask_id=s)),
            lambda t, s: stub.verify(api.VerifyRequest(task_id=t, subtask_id=s)),
            lambda t, s: stub.abort_subtask(api.AbortSubtaskRequest(task_id=t, subtask_id=s)),
            lambda t, s: stub.discard_subtasks(
                api.DiscardSubtasksRequest(task_id=t, subtask_ids=["ok", s])
            ),
        ):
            await expect_invalid(make(bad, "s1"), "task_id")
            await expect_invalid(make("good", bad), "subtask_id")
        await expect_invalid(
            stub.has_pending_subtasks(api.HasPendingSubtasksRequest(task_id=bad)), "task_id"
        )
        await expect_invalid(stub.abort_task(api.AbortTaskRequest(task_id=bad)), "task_id")
        assert await live.healthy()
    # Nothing outside the work dir, and in it only the good task.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]  # noqa: ASYNC240
    # (the engine's own hidden files aside)
    assert sorted(p.name for p in work.iterdir() if not p.name.startswith(".")) == ["good"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"resources": ["../../etc/passwd"]}, "resources[0]"),
        ({"resources": ["ok.txt", "/etc/passwd"]}, "resources[1]"),
        ({"resources": [""]}, "resources[0]"),
        ({"resources": "abc"}, "resources"),
        ({"names": ["..", "b"]}, "name"),
        ({"names": ["a", "x/y"]}, "name"),
    ],
)
async def test_bad_resource_and_part_names_fail_create_task(
    work_dir: Path, params: dict[str, Any], field: str
) -> None:
    async with live_requestor(apps.requestor, work_dir) as live:
        request = api.CreateTaskRequest(task_id="t", task_params_json=json.dumps(params))
        message = await expect_invalid(live.stub.create_task(request), field)
        assert "part" in message
        # The task was not recorded: the same id with good params now works.
        await live.stub.create_task(api.CreateTaskRequest(task_id="t", task_params_json="{}"))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "not valid JSON"),
        ('{"n": 1', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("42", "must be a JSON object"),
        ('"text"', "must be a JSON object"),
        ("null", "must be a JSON object"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"n": "many"}', "'n' must be an integer"),
        ('{"n": -1}', "'n' must be an integer"),
    ],
)
async def test_bad_task_params_json(work_dir: Path, text: str, words: str) -> None:
    async with live_requestor(apps.requestor, work_dir) as live:
        request = api.CreateTaskRequest(task_id="t", task_params_json=text)
        message = await expect_invalid(live.stub.create_task(request), "task_params_json")
        assert words in message
        assert await live.healthy()


async def test_negative_max_subtasks_count(work_dir: Path) -> None:
    async with live_requestor(apps.requestor, work_dir) as live:
        request = api.CreateTaskRequest(task_id="t", max_subtasks_count=-1)
        await expect_invalid(live.stub.create_task(request), "max_subtasks_count")


# -- provider ------------------------------------------------------------------


async def compute_once(work: Path, task_id: str, subtask_id: str, params: dict[str, Any]) -> str:
    async with serve_provider(apps.provider, work_dir=work, port=0) as server:
        client = await ProviderClient.connect("127.0.0.1", server.port, timeout=10)
        async with client:
            path = await client.compute(task_id, subtask_id, params)
        assert await server.wait() == 0
        return path


async def compute_fails(work: Path, params: dict[str, Any], subtask_id: str = "s1") -> GRPCError:
    async with serve_provider(apps.provider, work_dir=work, port=0) as server:
        client = await ProviderClient.connect("127.0.0.1", server.port, timeout=10)
        async with client:
            with pytest.raises(GRPCError) as info:
                await client.compute("t", subtask_id, params)
        assert await server.wait() == 1  # the node reads it as a failed computation
    return info.value


async def test_compute_result_inside_the_task_dir_is_accepted(tmp_path: Path) -> None:
    work = tmp_path / "task"
    work.mkdir()
    assert await compute_once(work, "t", "s1", {}) == "s1/result.txt"


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
async def test_compute_result_outside_the_task_dir_fails(tmp_path: Path, how: str) -> None:
    work = tmp_path / "task"
    work.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    params: dict[str, Any] = {
        "absolute": {"mode": "escape", "path": str(outside)},
        "dotdot": {"mode": "escape", "path": "s1/../../outside.txt"},
        "symlink": {"mode": "symlink", "target": str(outside)},
    }[how]
    error = await compute_fails(work, params)
    assert error.status is Status.INTERNAL
    assert "outside the task dir" in (error.message or "")


@pytest.mark.parametrize(
    ("task_id", "subtask_id"),
    [("t", "../up"), ("..", "s"), ("/abs", "s"), *(("t", name) for name in RESERVED_IDS)],
)
async def test_compute_bad_ids(tmp_path: Path, task_id: str, subtask_id: str) -> None:
    work = tmp_path / "task"
    work.mkdir()
    async with serve_provider(apps.provider, work_dir=work, port=0) as server:
        client = await ProviderClient.connect("127.0.0.1", server.port, timeout=10)
        async with client:
            field = "task_id" if task_id != "t" else "subtask_id"
            await expect_invalid(client.compute(task_id, subtask_id, {}), field)
        assert await server.wait() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task"]  # noqa: ASYNC240
    assert list(work.iterdir()) == []
