"""The accept()-error log of a running server: counted, at most once a second; the loop's
other errors reach the handler that was there before, which comes back when the server stops."""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import pytest

from golem_apps.server import _listen

pytestmark = pytest.mark.anyio


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
