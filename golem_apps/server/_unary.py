"""One adapter from ``async (request) -> reply`` functions to grpclib unary handlers."""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from typing import Any

from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from ._listen import decode_request, dispatch_request, recv_bytes, request_type
from ._status import to_grpc_error

#: Largest request message accepted, in bytes (gRPC's usual default). grpclib's
#: server has no limit of its own: it would buffer any length a client announces.
MAX_REQUEST_BYTES = 4 * 1024 * 1024


async def recv_request(stream: Stream[Any, Any], limit: int = MAX_REQUEST_BYTES) -> Any:
    """The request message of a unary call, read with a size limit.

    Missing, truncated (1 to 4 bytes of the 5-byte prefix included) or
    undecodable: INVALID_ARGUMENT. Too large: RESOURCE_EXHAUSTED before its
    body is read. Compressed: UNIMPLEMENTED.
    """
    prefix = await recv_bytes(stream, 5)
    if prefix is None or len(prefix) < 5:
        raise GRPCError(Status.INVALID_ARGUMENT, "the request message is missing or truncated")
    compressed, size = struct.unpack(">?I", prefix)
    if compressed:
        raise GRPCError(Status.UNIMPLEMENTED, "compressed messages are not supported")
    if size > limit:
        raise GRPCError(
            Status.RESOURCE_EXHAUSTED,
            f"the request message has {size} bytes, more than the limit of {limit}",
        )
    data = await recv_bytes(stream, size)
    if data is None:
        raise GRPCError(Status.INVALID_ARGUMENT, "the request message is truncated")
    try:
        request = decode_request(stream, data)
    except Exception as exc:
        raise GRPCError(
            Status.INVALID_ARGUMENT,
            f"malformed {request_type(stream).__name__} message: {type(exc).__name__}",
        ) from None
    return await dispatch_request(stream, request)


def unary(
    rpc: str,
    func: Callable[[Any], Awaitable[Any]],
    request_type: type,
    reply_type: type,
    *,
    claim: Callable[[], None] | None = None,
    after_reply: Callable[[], None] | None = None,
) -> Handler:
    """A grpclib Handler calling ``func``; errors become statuses.

    ``after_reply`` runs once the call is fully answered (trailers sent),
    whatever its outcome: servers use it to stop after Shutdown or after a
    one-shot provider's request. Without ``claim``, a call whose request is
    unreadable did not happen: grpclib answers its status, nothing else runs.
    ``claim`` is called as the call arrives, before its request is read (a
    GRPCError it raises refuses the call, and nothing else runs); from then
    on the call counts whatever happens, an unreadable request included.
    """

    async def handle(stream: Stream[Any, Any]) -> None:
        request = None
        if claim is None:
            request = await recv_request(stream)
        else:
            claim()
        try:
            try:
                if claim is not None:
                    request = await recv_request(stream)
                reply = await func(request)
            except Exception as exc:
                raise to_grpc_error(exc, rpc) from None
            await stream.send_message(reply)
        except GRPCError as error:
            if after_reply is None:
                raise
            await stream.send_trailing_metadata(status=error.status, status_message=error.message)
        else:
            if after_reply is not None:
                await stream.send_trailing_metadata()
        finally:
            if after_reply is not None:
                after_reply()

    return Handler(handle, Cardinality.UNARY_UNARY, request_type, reply_type)
