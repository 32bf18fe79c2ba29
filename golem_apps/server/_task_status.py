"""The requestor's ``golem_apps.RequestorStatus`` service: a task's status, over the wire.

It sits beside golem_task_api.RequestorApp on the same port (as
golem_apps.ProviderProgress sits beside ProviderApp); a Golem node ignores it.
Health answers SERVING for its name, so that a client can tell a golem_apps
requestor from another app's without calling anything else. Messages:
``protos/golem_apps/status.proto``.
"""

from __future__ import annotations

from grpclib.const import Handler

from .. import _wire as wire
from .._taskstatus import STATUS_SERVICE, status_to_wire
from .._validate import safe_name
from ..engine import Engine
from ._unary import unary

#: The service's full name (Health answers SERVING for it).
SERVICE = STATUS_SERVICE


class StatusService:
    """Answers TaskStatus from the engine; NOT_FOUND for an unknown task."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def task_status(self, request: wire.TaskStatusRequest) -> wire.TaskStatusReply:
        """TaskStatus: parts total and verified, parts by state, nodes, bans, retries."""
        task_id = safe_name(request.task_id, "task_id")
        return status_to_wire(await self._engine.task_status(task_id))

    def __mapping__(self) -> dict[str, Handler]:
        return {
            f"/{SERVICE}/TaskStatus": unary(
                "TaskStatus", self.task_status, wire.TaskStatusRequest, wire.TaskStatusReply
            )
        }
