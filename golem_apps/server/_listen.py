"""The grpclib server's edges: our own listening socket, a flushed stop, raw request reads.

We bind the socket ourselves, so that port 0 reports the port it got, unless
the process that starts us passed one in already listening on the port (the
local runner does: :func:`inherited`). And a
server about to stop makes sure its clients have read its last replies
(:func:`confirm_delivery`): a one-shot provider exits right after replying,
and a process that exits with unread bytes in its socket makes the kernel
reset the connection, which can destroy the reply before the client reads
it (the client sees "Connection lost" for a call that succeeded).

While the server runs, accept()'s resource errors (file descriptors
exhausted) are logged at most once a second, with a count
(:class:`_AcceptErrors`): asyncio logs one traceback per failed accept(),
up to a hundred per loop tick.

This is the one module that reaches into grpclib's internals, where it has
no public hook: its protocol factory and h2 connection (the PING), and a
stream's buffer, codec and events (:func:`recv_bytes` and the next two: its
``recv_message`` would buffer any length a client announces, and fail with
an AssertionError on a stream that ends early).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from grpclib.protocol import H2Protocol
from grpclib.server import Server, Stream

from .._exceptions import ConfigError

log = logging.getLogger("golem_apps.server")

#: How long a stopping server waits for its clients to read its last replies (a client
#: whose event loop is blocked never acknowledges: well under serve's 2 s grace period).
DELIVERY_TIMEOUT = 0.5
_PING_DATA = b"golemapp"


class _Protocol(H2Protocol):
    """grpclib's connection protocol, plus a PING whose acknowledgement we can wait for."""

    _acked: asyncio.Event | None = None
    _made = False  # not before a TLS handshake succeeds

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._made = True
        # grpclib's EventsProcessor calls connection.ping_ack_process() for each PING ACK.
        ack_process = self.connection.ping_ack_process

        def on_ping_ack() -> None:
            ack_process()
            if self._acked is not None:
                self._acked.set()

        self.connection.ping_ack_process = on_ping_ack  # type: ignore[method-assign]

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        if self._acked is not None:
            self._acked.set()  # nothing left to wait for

    def ping(self) -> asyncio.Event | None:
        """Send a PING after everything written so far; the event is set at its ACK.

        A client acknowledges a PING when it processes it, that is after it
        has read every byte sent before it. None when the connection is closed.
        """
        if not self._made or self.connection.is_closing():
            return None
        self._acked = asyncio.Event()
        self.connection._connection.ping(_PING_DATA)
        self.connection.flush()
        return self._acked


#: At most one log line per this many seconds about connections that could not be accepted.
ACCEPT_ERROR_INTERVAL = 1.0
#: accept()'s errors that asyncio survives (it pauses accepting for a second) but logs
#: with a traceback each time: out of file descriptors, of socket buffers, of memory.
_RESOURCE_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


class _AcceptErrors:
    """The loop's exception handler while a server runs: accept()'s resource errors counted.

    The first is logged at once, the next ones at most every
    :data:`ACCEPT_ERROR_INTERVAL` seconds as a count, without traceback;
    everything else goes to the handler that was there before.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous = loop.get_exception_handler()
        self._count = 0
        self._last = -ACCEPT_ERROR_INTERVAL
        self._error = ""
        self._flush: asyncio.TimerHandle | None = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS and "socket" in context):
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self._count += 1
        self._error = exc.strerror or str(exc)
        wait = self._last + ACCEPT_ERROR_INTERVAL - time.monotonic()
        if wait <= 0:
            self._report()
        elif self._flush is None:
            self._flush = loop.call_later(wait, self._report)

    def _report(self, *, stopping: bool = False) -> None:
        self._flush = None
        if self._count:
            log.error(
                "cannot accept connections: %s (%d failed accept() calls since the last "
                "report); %s",
                self._error, self._count,
                "the server stops" if stopping else "accepting again in a second",
            )  # fmt: skip
        self._count = 0
        self._last = time.monotonic()

    def uninstall(self) -> None:
        """Put the previous exception handler back (and report what is left to report, at
        once: the count is not lost when the server stops within the interval)."""
        if self._flush is not None:
            self._flush.cancel()
            self._report(stopping=True)
        if self._loop.get_exception_handler() is self:
            self._loop.set_exception_handler(self._previous)


class _Server(Server):
    """A grpclib Server that keeps track of its connections' protocols."""

    def __init__(self, handlers: list[Any]) -> None:
        super().__init__(handlers)
        self.protocols: weakref.WeakSet[_Protocol] = weakref.WeakSet()
        self._accept_errors: _AcceptErrors | None = None

    async def start(self, *args: Any, **kwargs: Any) -> None:
        """Start serving (grpclib's start), accept()'s resource errors counted meanwhile."""
        loop = asyncio.get_running_loop()
        self._accept_errors = _AcceptErrors(loop)
        loop.set_exception_handler(self._accept_errors)
        await super().start(*args, **kwargs)

    def close(self) -> None:
        """Stop accepting and close the connections (grpclib's close); the handler goes back."""
        super().close()
        if self._accept_errors is not None:
            self._accept_errors.uninstall()
            self._accept_errors = None

    def _protocol_factory(self) -> H2Protocol:
        # grpclib's factory builds and registers the connection's handler; we
        # keep that and wrap it in our protocol instead of grpclib's.
        default = super()._protocol_factory()
        protocol = _Protocol(default.handler, default.config, default.h2_config)
        self.protocols.add(protocol)
        return protocol


async def recv_bytes(stream: Stream[Any, Any], size: int) -> bytes | None:
    """The next ``size`` bytes of a call's request stream; None if it ends before them."""
    try:
        return await stream._stream.recv_data(size)
    except AssertionError:  # grpclib's buffer: the stream ended within the ``size`` bytes
        return None


def request_type(stream: Stream[Any, Any]) -> type:
    """The message type of a call's requests."""
    kind: type = stream._recv_type
    return kind


def decode_request(stream: Stream[Any, Any], data: bytes) -> Any:
    """A request message from its bytes, with the call's codec."""
    return stream._codec.decode(data, stream._recv_type)


async def dispatch_request(stream: Stream[Any, Any], request: Any) -> Any:
    """The request after grpclib's RecvMessage event (its listeners may replace it)."""
    (request,) = await stream._dispatch.recv_message(request)
    return request


async def confirm_delivery(server: _Server, timeout: float = DELIVERY_TIMEOUT) -> None:
    """Wait (up to ``timeout`` s) until every client has read what the server sent it."""
    acks = [event for event in (p.ping() for p in list(server.protocols)) if event is not None]
    if acks:
        waiting = [asyncio.ensure_future(event.wait()) for event in acks]
        _, pending = await asyncio.wait(waiting, timeout=timeout)
        for future in pending:
            future.cancel()


#: The environment variable by which the process that starts a server hands it a
#: socket already listening on its port: the file descriptor (see :func:`inherited`).
LISTEN_FD = "GOLEM_APPS_LISTEN_FD"


def inherited(port: int) -> socket.socket | None:
    """The listening TCP socket on ``port`` passed in by :data:`LISTEN_FD`, else None.

    The local runner binds its golem_apps servers' sockets and passes them in: its
    first Health call then waits in the socket's backlog until this server
    serves, instead of polling a port that refuses it until then. Read once:
    the variable leaves the environment, and the socket is not inherited by
    what the app starts. Anything else under that name is left alone.
    """
    value = os.environ.pop(LISTEN_FD, None)
    if value is None or not value.isdigit() or port == 0:
        return None
    try:
        sock = socket.socket(fileno=int(value))
    except OSError:  # not an open socket
        return None
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        usable = sock.type == socket.SOCK_STREAM and listening and sock.getsockname()[1] == port
    except OSError:
        usable = False
    if not usable:
        sock.detach()  # not ours to close
        return None
    sock.set_inheritable(False)
    sock.setblocking(False)
    return sock


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; ConfigError when that is impossible."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be between 0 and 65535, got {port}")
    # An ASCII host goes to getaddrinfo as bytes: a str is encoded with the
    # idna codec, whose import (stringprep, unicodedata) costs a provider ~0.7 ms.
    name: str | bytes = host.encode("ascii") if host.isascii() else host
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def check_work_dir(work_dir: Path) -> Path:
    """The work dir as an absolute path; it must exist (the node mounts it), else ConfigError.

    Absolute, so that every path built from it (and a handler's result path
    built from ``ctx.subtask_dir``) means the same wherever it is used.
    """
    if not work_dir.is_dir():
        raise ConfigError(f"work dir {work_dir} does not exist or is not a folder")
    return work_dir.absolute()


async def start(
    handlers: Iterable[Any], host: str, port: int, work_dir: Path
) -> tuple[_Server, int]:
    """Start a grpclib server with ``handlers``; returns it and the port it listens on."""
    from .._tls import server_context  # TLS when the work dir holds its files, else None

    context = server_context(work_dir)
    sock = inherited(port) or bind(host, port)
    server = _Server(list(handlers))
    await server.start(sock=sock, ssl=context)
    return server, sock.getsockname()[1]
