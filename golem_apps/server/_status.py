"""Translating exceptions into gRPC statuses: expected ones by type, the rest INTERNAL."""

from __future__ import annotations

import errno
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
#: Handler failures' tracebacks, at DEBUG: ``serve --tracebacks`` enables this logger alone.
tracebacks_log = logging.getLogger("golem_apps.server.tracebacks")

_STATUSES: tuple[tuple[type[Exception], Status], ...] = (
    (InvalidArgument, Status.INVALID_ARGUMENT),
    (InvalidTask, Status.INVALID_ARGUMENT),
    (TaskNotFound, Status.NOT_FOUND),
    (SubtaskNotFound, Status.NOT_FOUND),
    (AlreadyExists, Status.ALREADY_EXISTS),
    (WrongState, Status.FAILED_PRECONDITION),
)


#: SQLite's SQLITE_FULL result code ("database or disk is full").
_SQLITE_FULL = 13


def _disk_full(exc: Exception) -> bool:
    """True for a full disk or exhausted quota: an OSError, or SQLite's own error."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    code = getattr(exc, "sqlite_errorcode", None)  # sqlite3.Error, without importing sqlite3
    return isinstance(code, int) and code & 0xFF == _SQLITE_FULL


def to_grpc_error(exc: Exception, rpc: str) -> GRPCError:
    """The status answering ``exc``: its type and text as message, never a traceback."""
    if isinstance(exc, GRPCError):
        return exc
    for kind, status in _STATUSES:
        if isinstance(exc, kind):
            log.debug("%s: %s: %s", rpc, status.name, exc)  # the requestor logs each RPC at INFO
            return GRPCError(status, str(exc))
    if _disk_full(exc):
        # Nothing is wrong with the request: the call may succeed once space is back.
        log.error("%s failed, disk full: %s", rpc, exc)
        return GRPCError(Status.RESOURCE_EXHAUSTED, f"disk full: {exc}")
    # A handler failure: the node shows the message, which names the exception's
    # type (a bare KeyError says only 'texts'); the traceback stays in our log,
    # at DEBUG (``serve --tracebacks``: always), where the local runner finds it.
    message = describe(exc)
    log.error("%s failed: %s", rpc, message)
    tracebacks_log.debug("%s traceback", rpc, exc_info=exc, extra={"wire_message": message})
    return GRPCError(Status.INTERNAL, message)


def describe(exc: BaseException) -> str:
    """``KeyError: 'texts'``: the exception's type and text, as the last line of its traceback."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
