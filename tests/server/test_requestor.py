"""Every RequestorApp RPC through a real socket, with the typed client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from golem_apps import (
    ConfigError,
    Part,
    Requestor,
    RequestorClient,
    TaskContext,
    VerifyContext,
    VerifyResult,
    serve_requestor,
)
from golem_apps.constants import SUBTASK_OUTPUTS_DIR, TASK_OUTPUTS_DIR
from golem_apps.proto import golem_task_api as api
from tests.apps import sample

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(work_dir: Path) -> AsyncIterator[RequestorClient]:
    async with (
        serve_requestor(sample.requestor, work_dir=work_dir) as server,
        await RequestorClient.connect(port=server.port, timeout=5) as client,
    ):
        yield client


def put_result(work_dir: Path, task_id: str, subtask_id: str, text: str) -> Path:
    folder = work_dir / task_id / SUBTASK_OUTPUTS_DIR / subtask_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{subtask_id}.txt"
    path.write_text(text)
    return path


async def test_full_task_through_every_rpc(client: RequestorClient, work_dir: Path) -> None:
    created = await client.create_task("t1", {"texts": ["x"], "empty_part": True}, max_subtasks=5)
    assert created.env_id == "docker_cpu"
    assert created.prerequisites == {"image": "golem/sample", "tag": "1.0"}
    assert created.min_memory_mib == 128.0
    assert await client.has_pending_subtasks("t1") is True

    first = await client.next_subtask("t1", "s1", "node-a")
    assert first is not None and first.params == {"text": "x", "index": 0}
    second = await client.next_subtask("t1", "s2", "node-b")
    # A real subtask whose params are empty must not be mistaken for "no subtask".
    assert second is not None and second.params == {} and second.resources == []
    assert await client.has_pending_subtasks("t1") is False
    assert await client.next_subtask("t1", "s3", "node-c") is None  # the empty reply

    put_result(work_dir, "t1", "s1", "X")
    assert (await client.verify("t1", "s1")).result is VerifyResult.SUCCESS
    await client.abort_subtask("t1", "s2")  # its part goes back to the pool
    assert await client.has_pending_subtasks("t1") is True
    again = await client.next_subtask("t1", "s4", "node-b")
    assert again is not None and again.params == {}
    put_result(work_dir, "t1", "s4", "EMPTY")
    assert (await client.verify("t1", "s4")).result is VerifyResult.SUCCESS
    outputs = sorted(p.name for p in (work_dir / "t1" / TASK_OUTPUTS_DIR).iterdir())
    assert outputs == ["s1.txt", "s4.txt"]

    # Discarding a finished task's result reopens its part (a node's subtask restart).
    assert await client.discard_subtasks("t1", ["s1"]) == ["s1"]
    assert await client.has_pending_subtasks("t1") is True
    with pytest.raises(GRPCError) as error:
        await client.discard_subtasks("t1", ["unknown"])
    assert error.value.status is Status.NOT_FOUND and "'unknown'" in (error.value.message or "")
    assert await client.run_benchmark() == 42.0
    await client.abort_task("t1")
    with pytest.raises(GRPCError) as error:
        await client.has_pending_subtasks("t1")
    assert error.value.status is Status.FAILED_PRECONDITION


async def test_empty_next_subtask_reply_round_trips() -> None:
    empty = api.NextSubtaskReply.FromString(bytes(api.NextSubtaskReply()))
    real = api.NextSubtaskReply.FromString(bytes(api.NextSubtaskReply(subtask=api.SubtaskReply())))
    import betterproto

    assert betterproto.which_one_of(empty, "subtask_oneof")[0] == ""
    assert betterproto.which_one_of(real, "subtask_oneof")[0] == "subtask"


async def test_failed_verification_rehands_the_part(
    client: RequestorClient, work_dir: Path
) -> None:
    await client.create_task("t2", {"texts": ["a"]})
    assert await client.next_subtask("t2", "s1", "n") is not None
    put_result(work_dir, "t2", "s1", "")  # empty result: the default verify refuses it
    verdict = await client.verify("t2", "s1")
    assert verdict.result is VerifyResult.FAILURE and "empty" in verdict.reason
    assert await client.next_subtask("t2", "s2", "n") is not None


@pytest.mark.parametrize(
    ("call", "status", "needle"),
    [
        (lambda c: c.create_task("t/..", {}), Status.INVALID_ARGUMENT, "task_id"),
        (
            lambda c: c.create_task(".golem_apps_engine.sqlite3", {}),
            Status.INVALID_ARGUMENT,
            "task_id must not be '.golem_apps_engine.sqlite3': reserved",
        ),
        (lambda c: c.has_pending_subtasks("nope"), Status.NOT_FOUND, "'nope'"),
        (lambda c: c.verify("nope", "s"), Status.NOT_FOUND, "'nope'"),
        (lambda c: c.abort_task(""), Status.INVALID_ARGUMENT, "task_id must not be empty"),
    ],
    ids=["bad-task-id", "dot-task-id", "unknown-task", "verify-unknown-task", "empty-task-id"],
)
async def test_errors_become_statuses(
    client: RequestorClient, call: Any, status: Status, needle: str
) -> None:
    with pytest.raises(GRPCError) as error:
        await call(client)
    assert error.value.status is status
    assert needle in (error.value.message or "")


async def test_malformed_params_json_is_invalid_argument(
    client: RequestorClient,
) -> None:
    stub = api.RequestorAppStub(client.channel)
    for text, needle in [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object")]:
        with pytest.raises(GRPCError) as error:
            await stub.create_task(api.CreateTaskRequest(task_id="t", task_params_json=text))
        assert error.value.status is Status.INVALID_ARGUMENT
        assert "task_params_json" in (error.value.message or "") and needle in (
            error.value.message or ""
        )


async def test_duplicate_task_and_subtask_ids(client: RequestorClient) -> None:
    await client.create_task("t3", {"texts": ["a", "b"]})
    with pytest.raises(GRPCError) as error:
        await client.create_task("t3", {})
    assert error.value.status is Status.ALREADY_EXISTS
    await client.next_subtask("t3", "s1", "n1")
    with pytest.raises(GRPCError) as error:
        await client.next_subtask("t3", "s1", "n2")
    assert error.value.status is Status.ALREADY_EXISTS


async def test_handler_error_is_internal_with_its_text_and_server_keeps_serving(
    work_dir: Path,
) -> None:
    requestor = Requestor("broken")

    @requestor.task
    def split(task: TaskContext) -> list[Part]:
        raise ValueError("no parts today")

    async with (
        serve_requestor(requestor, work_dir=work_dir) as server,
        await RequestorClient.connect(port=server.port) as client,
    ):
        with pytest.raises(GRPCError) as error:
            await client.create_task("t", {})
        assert error.value.status is Status.INTERNAL
        assert error.value.message == "ValueError: no parts today"
        assert "Traceback" not in str(error.value.details)
        assert await client.run_benchmark() == 1.0  # still serving


async def test_verify_hook_verdicts_and_async_generator_split(work_dir: Path) -> None:
    requestor = Requestor("hooks")

    @requestor.task
    async def split(task: TaskContext) -> AsyncIterator[dict[str, Any]]:
        for i in range(2):
            yield {"i": i}

    @requestor.verify
    def verify(result: VerifyContext) -> bool:
        return result.result_path.read_text() == "ok"

    async with (
        serve_requestor(requestor, work_dir=work_dir) as server,
        await RequestorClient.connect(port=server.port) as client,
    ):
        await client.create_task("t", {})
        await client.next_subtask("t", "a", "n1")
        put_result(work_dir, "t", "a", "bad")
        assert (await client.verify("t", "a")).result is VerifyResult.FAILURE
        await client.next_subtask("t", "b", "n1")
        put_result(work_dir, "t", "b", "ok")
        assert (await client.verify("t", "b")).result is VerifyResult.SUCCESS


async def test_escape_hatch_rpc_replaces_the_engine(work_dir: Path) -> None:
    requestor = Requestor("custom")
    requestor.task(lambda task: [])
    seen: list[Path] = []

    @requestor.rpc("HasPendingSubtasks")
    async def has_pending(
        request: api.HasPendingSubtasksRequest, work_dir: Path
    ) -> api.HasPendingSubtasksReply:
        seen.append(work_dir)
        return api.HasPendingSubtasksReply(has_pending_subtasks=request.task_id == "yes")

    async with (
        serve_requestor(requestor, work_dir=work_dir) as server,
        await RequestorClient.connect(port=server.port) as client,
    ):
        assert await client.has_pending_subtasks("yes") is True
        assert await client.has_pending_subtasks("no") is False
    assert seen == [work_dir, work_dir]


async def test_shutdown_replies_then_stops_and_lifespan_wraps_the_server(
    work_dir: Path,
) -> None:
    events: list[str] = []

    async def lifespan(app: Requestor) -> AsyncIterator[None]:
        events.append("start")
        yield
        events.append("stop")

    requestor = Requestor("life", lifespan=lifespan)
    requestor.task(lambda task: [])
    async with serve_requestor(requestor, work_dir=work_dir) as server:
        assert events == ["start"]
        async with await RequestorClient.connect(port=server.port) as client:
            await client.shutdown()
        await server.wait_shutdown()
    assert events == ["start", "stop"]


async def test_requestor_without_task_handler_refuses_to_start(work_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"no @requestor\.task handler"):
        async with serve_requestor(Requestor("empty"), work_dir=work_dir):
            pass
