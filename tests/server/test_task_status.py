"""golem_apps.RequestorStatus: a task's status over the wire, beside RequestorApp."""

from __future__ import annotations

from pathlib import Path

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from golem_apps import NodeStatus, RequestorClient, TaskStatus, VerifyResult, serve_requestor
from golem_apps._taskstatus import status_from_wire, status_to_wire
from golem_apps.constants import SUBTASK_OUTPUTS_DIR
from tests.apps import sample

pytestmark = pytest.mark.anyio


async def test_the_status_service_answers_what_the_engine_knows(work_dir: Path) -> None:
    async with (
        serve_requestor(sample.requestor, work_dir=work_dir) as server,
        await RequestorClient.connect(port=server.port, timeout=5) as client,
    ):
        assert await client.offers("golem_apps.RequestorStatus")
        assert await client.offers("golem_task_api.RequestorApp")
        assert not await client.offers("golem_apps.NoSuchService")
        await client.create_task("t1", {"texts": ["a", "b", "c"]})
        status = await client.task_status("t1")
        assert (status.parts["total"], status.parts.get("done", 0), status.state) == (
            3,
            0,
            "active",
        )
        assert await client.next_subtask("t1", "s1", "node-a") is not None
        folder = work_dir / "t1" / SUBTASK_OUTPUTS_DIR / "s1"
        folder.mkdir(parents=True)
        (folder / "result.txt").write_text("A")
        assert (await client.verify("t1", "s1")).result is VerifyResult.SUCCESS
        status = await client.task_status("t1")
        assert status == await server.task_status("t1")
        assert status.parts["done"] == 1
        assert status.nodes["node-a"].subtasks == {"success": 1}
        with pytest.raises(GRPCError) as caught:
            await client.task_status("nope")
        assert caught.value.status is Status.NOT_FOUND
        with pytest.raises(GRPCError) as caught:
            await client.task_status("../x")
        assert caught.value.status is Status.INVALID_ARGUMENT


def test_a_status_survives_the_wire_whole() -> None:
    status = TaskStatus(
        task_id="t",
        state="active",
        parts={"total": 5, "done": 2, "ready": 2, "computing": 1},
        nodes={
            "n1": NodeStatus(subtasks={"success": 2, "failure": 1}, failures=1, banned="cheats"),
            "n2": NodeStatus(subtasks={"computing": 1}),
        },
        failures=1,
        max_retries=3,
        redundancy=2,
        ban_after=1,
    )
    reply = status_to_wire(status)
    assert (reply.parts_total, reply.parts_verified) == (5, 2)
    decoded = type(reply).FromString(reply.SerializeToString())
    assert status_from_wire(decoded) == status
    assert status_from_wire(decoded).bans == {"n1": "cheats"}
