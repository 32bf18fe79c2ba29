"""The server's socket: one passed in by the process that starts it, taken only when it is
one listening on the port; and the accept()-error log of a running server: counted, at most
once a second (the loop's other errors reach the handler that was there before, which comes
back when the server stops)."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from golem_apps.server import _listen

pytestmark = pytest.mark.anyio


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def pass_in(monkeypatch: pytest.MonkeyPatch, value: object) -> None:
    monkeypatch.setenv(_listen.LISTEN_FD, str(value))


def test_a_socket_listening_on_the_port_is_taken_once_and_not_inherited(
    listening: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = listening.getsockname()[1]
    twin = listening.dup()  # the descriptor a starting process would pass in:
    twin.set_inheritable(True)  # inheritable, as pass_fds leaves it in the child
    pass_in(monkeypatch, twin.fileno())
    taken = _listen.inherited(port)
    assert taken is not None
    with taken:
        assert taken.fileno() == twin.detach()
        assert taken.getsockname()[1] == port
        assert not taken.get_inheritable()  # what the app starts does not hold the port
        assert _listen.LISTEN_FD not in os.environ  # nor does it see the variable
        assert _listen.inherited(port) is None  # taken once


@pytest.mark.parametrize("wrong", ["another port", "a pipe", "no number", "a closed one"])
def test_anything_else_passed_in_is_left_alone(
    wrong: str, listening: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = listening.getsockname()[1]
    read, write = os.pipe()
    try:
        fd = {"another port": listening.fileno(), "a pipe": read}.get(wrong)
        if wrong == "a closed one":
            fd = os.dup(read)
            os.close(fd)
        pass_in(monkeypatch, fd if fd is not None else "three")
        assert _listen.inherited(port + 1 if wrong == "another port" else port) is None
        assert _listen.LISTEN_FD not in os.environ
        os.fstat(listening.fileno())  # still open: not ours to close
        os.fstat(read)
    finally:
        os.close(read)
        os.close(write)


async def test_a_server_serves_on_the_socket_passed_in(
    listening: socket.socket, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    port = listening.getsockname()[1]
    twin = listening.dup()
    listening.close()  # the starting process lets go: only the server holds the port now
    pass_in(monkeypatch, twin.detach())
    server, bound = await _listen.start([], "127.0.0.1", port, tmp_path)
    try:
        assert bound == port
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


def accept_error(code: int = errno.EMFILE) -> dict[str, Any]:
    return {
        "message": "socket.accept() out of system resource",
        "exception": OSError(code, "Too many open files"),
        "socket": object(),
    }


async def test_accept_errors_are_counted_and_others_passed_on(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_listen, "ACCEPT_ERROR_INTERVAL", 0.2)
    loop = asyncio.get_running_loop()
    others: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: others.append(context))
    try:
        server = _listen._Server([])
        sock = _listen.bind("127.0.0.1", 0)
        await server.start(sock=sock)
        for _ in range(50):
            loop.call_exception_handler(accept_error())
        loop.call_exception_handler({"message": "something else"})
        await asyncio.sleep(0.4)
        # The next one falls within the interval: the server stops before its report is
        # due, and reports it at once.
        monkeypatch.setattr(_listen, "ACCEPT_ERROR_INTERVAL", 60.0)
        loop.call_exception_handler(accept_error(errno.ENFILE))
        server.close()  # reports what is left, puts the handler back
        await server.wait_closed()
        loop.call_exception_handler({"message": "after"})
    finally:
        handler = loop.get_exception_handler()
        loop.set_exception_handler(previous)
    reports = [r.getMessage() for r in caplog.records if "cannot accept" in r.getMessage()]
    assert reports == [
        "cannot accept connections: Too many open files (1 failed accept() calls since the "
        "last report); accepting again in a second",
        "cannot accept connections: Too many open files (49 failed accept() calls since the "
        "last report); accepting again in a second",
        "cannot accept connections: Too many open files (1 failed accept() calls since the "
        "last report); the server stops",
    ]
    assert [c["message"] for c in others] == ["something else", "after"]
    assert handler is not None and not isinstance(handler, _listen._AcceptErrors)
