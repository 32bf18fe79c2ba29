"""The requestor's log line per RPC and its events."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from golem_apps import (
    Event,
    HandlerError,
    Part,
    Requestor,
    RequestorClient,
    TaskContext,
    VerifyResult,
    serve_requestor,
)
from tests.apps import sample

pytestmark = pytest.mark.anyio


def put_result(work_dir: Path, task_id: str, subtask_id: str, text: str) -> None:
    """What the node does before Verify: the provider's result in subtask_outputs/<id>/."""
    folder = work_dir / task_id / "subtask_outputs" / subtask_id
    folder.mkdir(parents=True)
    (folder / "result.txt").write_text(text)


def rpc_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "golem_apps.rpc"]


async def test_one_info_line_per_rpc(work_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="golem_apps")
    async with (
        serve_requestor(sample.requestor, work_dir=work_dir) as server,
        await RequestorClient.connect("127.0.0.1", server.port) as client,
    ):
        await client.create_task("t1", {"texts": ["a"]})
        assert await client.next_subtask("t1", "s1", "node-a") is not None
        assert await client.next_subtask("t1", "s2", "node-b") is None
        put_result(work_dir, "t1", "s1", "A")
        assert (await client.verify("t1", "s1")).result is VerifyResult.SUCCESS
        with pytest.raises(GRPCError):
            await client.has_pending_subtasks("nope")
        with pytest.raises(GRPCError):
            await client.verify("..", "s1")
    records = rpc_records(caplog)
    seen = [(r.rpc, r.task_id, r.subtask_id, r.status) for r in records]  # type: ignore[attr-defined]
    assert seen == [
        ("CreateTask", "t1", "", "OK"),
        ("NextSubtask", "t1", "s1", "OK"),
        ("NextSubtask", "t1", "s2", "OK"),
        ("Verify", "t1", "s1", "OK"),
        ("HasPendingSubtasks", "nope", "", "NOT_FOUND"),
        ("Verify", "..", "s1", "INVALID_ARGUMENT"),
    ]
    assert all(r.levelno == logging.INFO for r in records)
    messages = [r.getMessage() for r in records]
    assert messages[1].startswith("rpc=NextSubtask task_id='t1' subtask_id='s1' status=OK ")
    assert messages[1].endswith(" outcome=assigned")
    assert messages[2].endswith(" outcome=none")
    assert messages[3].endswith(" outcome=SUCCESS")
    assert "error=\"task_id must not be '..'" in messages[5]
    assert all(r.duration_ms >= 0 for r in records)  # type: ignore[attr-defined]
    # No other INFO line repeats the errors: one line per RPC.
    assert not [r for r in caplog.records if r.name == "golem_apps.server" and r.levelno >= 20]


async def test_handler_traceback_only_at_debug(
    work_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = Requestor("boom")

    @app.task
    def split(task: TaskContext) -> list[Part]:
        raise RuntimeError("split exploded")

    caplog.set_level(logging.INFO, logger="golem_apps")
    async with (
        serve_requestor(app, work_dir=work_dir) as server,
        await RequestorClient.connect("127.0.0.1", server.port) as client,
    ):
        with pytest.raises(GRPCError) as caught:
            await client.create_task("t1")
        assert caught.value.status == Status.INTERNAL
        assert not [r for r in caplog.records if r.exc_info]
        caplog.set_level(logging.DEBUG, logger="golem_apps")
        with pytest.raises(GRPCError):
            await client.create_task("t2")
    (line,) = [r for r in rpc_records(caplog) if r.task_id == "t1"]  # type: ignore[attr-defined]
    assert line.status == "INTERNAL"  # type: ignore[attr-defined]
    assert "error='RuntimeError: split exploded'" in line.getMessage()
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and tracebacks[0].levelno == logging.DEBUG


def events_app() -> tuple[Requestor, list[Event]]:
    app = Requestor("events")
    seen: list[Event] = []

    @app.task
    def split(task: TaskContext) -> list[Part]:
        return [Part(params={"n": n}, name=f"p{n}") for n in range(2)]

    @app.on("task_created")
    @app.on("subtask_assigned")
    @app.on("subtask_failed")
    def sync_listener(event: Event) -> None:
        seen.append(event)

    @app.on("subtask_verified")
    @app.on("subtask_aborted")
    @app.on("task_aborted")
    @app.on("task_finished")
    async def async_listener(event: Event) -> None:
        seen.append(event)

    return app, seen


async def test_task_finished_once_the_merge_is_done(work_dir: Path) -> None:
    app, seen = events_app()
    async with (
        serve_requestor(app, work_dir=work_dir) as server,
        await RequestorClient.connect("127.0.0.1", server.port) as client,
    ):
        await client.create_task("t1")
        for sid in ("s1", "s2"):
            await client.next_subtask("t1", sid, f"node-{sid}")
            put_result(work_dir, "t1", sid, sid)
            await client.verify("t1", sid)
    kinds = [e.kind for e in seen]
    # The merge runs inside the last Verify: its event comes before that
    # Verify's own subtask_verified, once.
    assert kinds[-2:] == ["task_finished", "subtask_verified"]
    assert kinds.count("task_finished") == 1
    assert seen[-2].task_id == "t1" and seen[-1].subtask_id == "s2"
    # The merge was done when the event came: both results are in task_outputs.
    assert sorted(p.name for p in (work_dir / "t1" / "task_outputs").iterdir()) == [
        "p0-result.txt",
        "p1-result.txt",
    ]


async def test_events_reach_listeners(work_dir: Path) -> None:
    app, seen = events_app()
    async with (
        serve_requestor(app, work_dir=work_dir) as server,
        await RequestorClient.connect("127.0.0.1", server.port) as client,
    ):
        await client.create_task("t1")
        await client.next_subtask("t1", "s1", "node-a")
        await client.next_subtask("t1", "s2", "node-b")
        assert await client.next_subtask("t1", "s3", "node-c") is None  # no event
        put_result(work_dir, "t1", "s1", "ok")
        put_result(work_dir, "t1", "s2", "")  # empty: FAILURE
        await client.verify("t1", "s1")
        await client.verify("t1", "s2")
        await client.next_subtask("t1", "s4", "node-d")
        await client.abort_subtask("t1", "s4")
        await client.abort_task("t1")
    assert [(e.kind, e.task_id, e.subtask_id, e.node_id) for e in seen] == [
        ("task_created", "t1", "", ""),
        ("subtask_assigned", "t1", "s1", "node-a"),
        ("subtask_assigned", "t1", "s2", "node-b"),
        ("subtask_verified", "t1", "s1", ""),
        ("subtask_failed", "t1", "s2", ""),
        ("subtask_assigned", "t1", "s4", "node-d"),
        ("subtask_aborted", "t1", "s4", ""),
        ("task_aborted", "t1", "", ""),
    ]
    assert "empty" in seen[4].reason


async def test_failing_listener_is_logged_and_the_reply_stands(
    work_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = Requestor("x")

    @app.task
    def split(task: TaskContext) -> list[Part]:
        return [Part()]

    @app.on("subtask_assigned")
    def broken(event: Event) -> None:
        raise ValueError("metrics down")

    async with (
        serve_requestor(app, work_dir=work_dir) as server,
        await RequestorClient.connect("127.0.0.1", server.port) as client,
    ):
        await client.create_task("t1")
        assert await client.next_subtask("t1", "s1") is not None
    (record,) = [r for r in caplog.records if r.name == "golem_apps.events"]
    assert record.levelno == logging.ERROR
    assert "subtask_assigned listener" in record.getMessage()
    assert "ValueError: metrics down" in record.getMessage()


def test_bad_listeners_fail_at_decoration() -> None:
    app = Requestor("x")
    with pytest.raises(HandlerError, match="unknown event; expected one of task_created"):
        app.add_listener("task_done", lambda event: None)
    with pytest.raises(HandlerError, match=r"must take exactly \(event\)"):
        app.add_listener("task_created", lambda: None)
