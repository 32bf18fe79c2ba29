"""The engine's errors over the wire: statuses whose messages name the id, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from golem_apps import RequestorClient, serve_requestor

from ..apps.engine_app import requestor

pytestmark = pytest.mark.anyio


async def test_error_statuses_name_the_ids(work_dir: Path) -> None:
    async with (
        serve_requestor(requestor, work_dir=work_dir) as server,
        await RequestorClient.connect("127.0.0.1", server.port) as client,
    ):
        cases = [
            (client.has_pending_subtasks("nope"), Status.NOT_FOUND, "'nope'"),
            (client.create_task("big", {"parts": 5}, 3), Status.INVALID_ARGUMENT, "'big'"),
        ]
        for call, status, text in cases:
            with pytest.raises(GRPCError) as error:
                await call
            assert error.value.status is status
            assert error.value.message is not None and text in error.value.message
            assert "Traceback" not in error.value.message
        await client.create_task("t", {"parts": 2})
        assert await client.next_subtask("t", "s1", "node") is not None
        with pytest.raises(GRPCError) as error:
            await client.next_subtask("t", "s1", "other")
        assert error.value.status is Status.ALREADY_EXISTS
        assert error.value.message == "subtask 's1' already exists in task 't'"
        with pytest.raises(GRPCError) as error:
            await client.verify("t", "ghost")
        assert error.value.status is Status.NOT_FOUND
        assert error.value.message == "subtask 'ghost' not found in task 't'"
        await client.abort_task("t")
        with pytest.raises(GRPCError) as error:
            await client.next_subtask("t", "s2", "node")
        assert error.value.status is Status.FAILED_PRECONDITION
        assert error.value.message == "task 't' was aborted"
