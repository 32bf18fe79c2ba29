"""Two async context managers entered at once and left at once, each in a task of its own.

The runner starts the requestor and a Dask cluster (``--cluster local:N``: a
LocalCluster takes ~0.3 s) before anything else can happen, and stops both
at the end: one after the other, those are serial phases of every run.

Each context manager is entered and left in one task of its own (anyio's
cancel scopes and distributed's context variables want the same task for
both), which then waits for the block to end. The block's exception (a
cancellation too) is raised inside both, as ``async with a, b:`` would.
When one fails to enter, the other is cancelled if it is still entering,
or left with that failure; the failure comes out as it was raised, not in an
exception group.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Generic, TypeVar

import anyio

A = TypeVar("A")
B = TypeVar("B")
T = TypeVar("T")


class _Held(Generic[T]):
    """One context manager, held open by a task until told to leave."""

    def __init__(self, manager: AbstractAsyncContextManager[T]) -> None:
        self._manager = manager
        self.entered: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.leave = asyncio.Event()
        self.error: BaseException | None = None
        """The block's exception, raised inside the context manager as it leaves."""

    async def hold(self) -> None:
        try:
            async with self._manager as value:
                self.entered.set_result(value)
                await self.leave.wait()
                if self.error is not None:
                    raise self.error
        except BaseException as exc:
            if not self.entered.done():  # entering failed (or was cancelled)
                self.entered.set_exception(exc)
                self.entered.exception()  # retrieved: the caller raises it
            raise

    def failure(self) -> BaseException | None:
        """Why entering failed; None while entering, or once entered."""
        return self.entered.exception() if self.entered.done() else None


def _retrieve(task: asyncio.Task[Any]) -> BaseException | None:
    return None if task.cancelled() else task.exception()


@asynccontextmanager
async def entered_in_turn(
    first: AbstractAsyncContextManager[A], second: AbstractAsyncContextManager[B]
) -> AsyncIterator[tuple[A, B]]:
    """``async with first as a, second as b``: the same shape as :func:`entered_together`."""
    async with first as a, second as b:
        yield a, b


@asynccontextmanager
async def entered_together(
    first: AbstractAsyncContextManager[A], second: AbstractAsyncContextManager[B]
) -> AsyncIterator[tuple[A, B]]:
    """``async with first as a, second as b``, but both entered at once and left at once."""
    held_a, held_b = _Held(first), _Held(second)
    held: tuple[_Held[Any], ...] = (held_a, held_b)
    tasks = [asyncio.ensure_future(h.hold()) for h in held]

    async def leave(error: BaseException | None) -> list[BaseException | None]:
        for h, task in zip(held, tasks, strict=True):
            if h.entered.done() and h.failure() is None:
                h.error = error
                h.leave.set()
            else:
                task.cancel()  # still entering, or failed to
        with anyio.CancelScope(shield=True):
            await asyncio.wait(tasks)
        return [_retrieve(task) for task in tasks]

    try:
        await asyncio.wait([h.entered for h in held], return_when=asyncio.FIRST_EXCEPTION)
    except BaseException as exc:  # cancelled while entering
        await leave(exc)
        raise
    failed = [exc for exc in (h.failure() for h in held) if exc is not None]
    if failed:
        await leave(failed[0])
        raise failed[0]
    try:
        yield held_a.entered.result(), held_b.entered.result()
    except BaseException as exc:
        await leave(exc)
        raise
    errors = [error for error in await leave(None) if error is not None]
    if errors:
        raise errors[0]
