"""One adapter from ``async (request) -> reply`` functions to grpclib unary handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from grpclib.const import Cardinality, Handler
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from ._status import to_grpc_error


def unary(
    rpc: str,
    func: Callable[[Any], Awaitable[Any]],
    request_type: type,
    reply_type: type,
    *,
    after_reply: Callable[[], None] | None = None,
) -> Handler:
    """A grpclib Handler calling ``func``; errors become statuses.

    ``after_reply`` runs once the call is fully answered (trailers sent),
    whatever its outcome: servers use it to stop after Shutdown or after a
    one-shot provider's request.
    """

    async def handle(stream: Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        try:
            try:
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
