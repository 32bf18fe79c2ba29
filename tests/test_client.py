"""The clients' guard against grpclib's leftover cancellation count."""

from __future__ import annotations

import asyncio

import pytest
from grpclib.exceptions import StreamTerminatedError

from golem_apps._client import _rpc

pytestmark = pytest.mark.anyio


async def broken_connection() -> None:
    """What grpclib's Wrapper does when a call's connection breaks: cancel the
    calling task, then raise its own error in place of the CancelledError."""
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    try:
        await asyncio.sleep(1)
    except asyncio.CancelledError:
        raise StreamTerminatedError("Connection lost") from None


async def test_a_broken_call_leaves_the_cancellation_count_as_it_was() -> None:
    task = asyncio.current_task()
    assert task is not None
    before = task.cancelling()
    with pytest.raises(StreamTerminatedError):
        await _rpc(broken_connection())
    # Without the guard the count stays raised, and an enclosing anyio cancel
    # scope later cancels this task out of the blue.
    assert task.cancelling() == before
    await asyncio.sleep(0)  # and no cancellation is pending


async def test_a_successful_call_returns_its_value() -> None:
    async def answer() -> int:
        return 42

    assert await _rpc(answer()) == 42
