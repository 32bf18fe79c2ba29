"""The requestor's observability: one INFO log line per RPC, and the app's events.

Every RequestorApp call is logged once, on the ``golem_apps.rpc`` logger, as
``key=value`` pairs (also given to the record as ``extra`` attributes):
``rpc``, ``task_id``, ``subtask_id``, ``status`` (the gRPC status name),
``duration_ms``, then ``outcome`` (what a successful call answered) or
``error`` (the status message). Ids are quoted with ``repr``: they are
untrusted text. Tracebacks of handler failures are logged at DEBUG by
``_status``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .. import _wire as wire
from .._contexts import VerifyResult
from .._events import Event
from .._handlers import call
from .._requestor import Requestor
from ._status import to_grpc_error

log = logging.getLogger("golem_apps.rpc")
events_log = logging.getLogger("golem_apps.events")

_FAILED = (VerifyResult.FAILURE, VerifyResult.INCONCLUSIVE)


def _assigned(reply: Any) -> bool:
    """Whether a NextSubtask reply (light or, from an override, generated) holds a subtask."""
    if isinstance(reply, wire.NextSubtaskReply):
        return reply.subtask is not None
    # An override's generated reply: betterproto is loaded already (not at start-up).
    import betterproto

    name, _ = betterproto.which_one_of(reply, "subtask_oneof")
    return bool(name)


def _outcome(rpc: str, reply: Any) -> str:
    """What a reply says, in a word or two (replies are light or generated messages alike)."""
    if rpc == "NextSubtask":
        return "assigned" if _assigned(reply) else "none"
    if rpc == "Verify":
        return VerifyResult(int(reply.result)).name
    if rpc == "HasPendingSubtasks":
        return "pending" if reply.has_pending_subtasks else "none"
    if rpc == "DiscardSubtasks":
        return f"discarded={len(reply.discarded_subtask_ids)}"
    if rpc == "RunBenchmark":
        return f"score={reply.score:g}"
    return "-"


def _events(rpc: str, request: Any, reply: Any) -> list[Event]:
    """The events a successful call makes."""
    task_id = getattr(request, "task_id", "")
    subtask_id = getattr(request, "subtask_id", "")
    if rpc == "CreateTask":
        return [Event("task_created", task_id)]
    if rpc == "NextSubtask" and _assigned(reply):
        return [Event("subtask_assigned", task_id, subtask_id, node_id=request.opaque_node_id)]
    if rpc == "Verify":
        if reply.result == VerifyResult.SUCCESS:
            return [Event("subtask_verified", task_id, subtask_id, reason=reply.reason)]
        if reply.result in _FAILED:
            return [Event("subtask_failed", task_id, subtask_id, reason=reply.reason)]
    if rpc == "AbortSubtask":
        return [Event("subtask_aborted", task_id, subtask_id)]
    if rpc == "AbortTask":
        return [Event("task_aborted", task_id)]
    return []


async def emit(app: Requestor, event: Event) -> None:
    """Call the app's listeners of ``event.kind``; their errors are logged, not raised."""
    for listener in app.listeners.get(event.kind, ()):
        try:
            await call(listener, event)
        except Exception as exc:
            events_log.error(
                "%s listener %s failed: %s: %s",
                event.kind,
                getattr(listener, "__qualname__", listener),
                type(exc).__name__,
                exc,
            )
            events_log.debug("%s listener traceback", event.kind, exc_info=exc)


def observed(
    app: Requestor, rpc: str, method: Callable[[Any], Awaitable[Any]]
) -> Callable[[Any], Awaitable[Any]]:
    """``method`` with its log line and its events."""

    async def run(request: Any) -> Any:
        started = time.perf_counter()
        status, detail = "OK", ""
        try:
            reply = await method(request)
            detail = _outcome(rpc, reply)
        except anyio.get_cancelled_exc_class():
            status = "CANCELLED"
            raise
        except Exception as exc:
            error = to_grpc_error(exc, rpc)
            status, detail = error.status.name, str(error.message or "")
            raise error from None
        finally:
            _log_line(rpc, request, status, detail, started)
        if app.listeners:
            for event in _events(rpc, request, reply):
                await emit(app, event)
        return reply

    return run


def _log_line(rpc: str, request: Any, status: str, detail: str, started: float) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    duration_ms = (time.perf_counter() - started) * 1000
    task_id = getattr(request, "task_id", "")
    subtask_id = getattr(request, "subtask_id", "")
    if not subtask_id and getattr(request, "subtask_ids", None):
        ids = list(request.subtask_ids)
        subtask_id = ",".join(ids[:3]) + (f",+{len(ids) - 3}" if len(ids) > 3 else "")
    fields = {
        "rpc": rpc,
        "task_id": task_id,
        "subtask_id": subtask_id,
        "status": status,
        "duration_ms": round(duration_ms, 3),
    }
    log.info(
        "rpc=%s task_id=%r subtask_id=%r status=%s duration_ms=%.1f %s",
        rpc,
        task_id,
        subtask_id,
        status,
        duration_ms,
        f"error={detail!r}" if status != "OK" else f"outcome={detail}",
        extra=fields,
    )
