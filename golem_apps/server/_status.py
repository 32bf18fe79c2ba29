"""Translating exceptions into gRPC statuses: expected ones by type, the rest INTERNAL."""

from __future__ import annotations

import logging

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from .._exceptions import (
    AlreadyExists,
    InvalidArgument,
    InvalidTask,
    SubtaskNotFound,
    TaskNotFound,
    WrongState,
)

log = logging.getLogger("golem_apps.server")

_STATUSES: tuple[tuple[type[Exception], Status], ...] = (
    (InvalidArgument, Status.INVALID_ARGUMENT),
    (InvalidTask, Status.INVALID_ARGUMENT),
    (TaskNotFound, Status.NOT_FOUND),
    (SubtaskNotFound, Status.NOT_FOUND),
    (AlreadyExists, Status.ALREADY_EXISTS),
    (WrongState, Status.FAILED_PRECONDITION),
)


def to_grpc_error(exc: Exception, rpc: str) -> GRPCError:
    """The status answering ``exc``: its text as message, never a traceback."""
    if isinstance(exc, GRPCError):
        return exc
    for kind, status in _STATUSES:
        if isinstance(exc, kind):
            log.debug("%s: %s: %s", rpc, status.name, exc)  # the requestor logs each RPC at INFO
            return GRPCError(status, str(exc))
    # A handler failure: the node shows the message; the traceback stays in our log.
    log.error("%s failed: %s: %s", rpc, type(exc).__name__, exc)
    log.debug("%s traceback", rpc, exc_info=exc)
    return GRPCError(Status.INTERNAL, str(exc) or type(exc).__name__)
