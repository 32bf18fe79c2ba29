"""Two context managers entered at once and left at once (the requestor and a Dask cluster)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import pytest

from golem_apps.runner._together import entered_in_turn, entered_together

pytestmark = pytest.mark.anyio
#: Safety bound: a context manager that waits for the other one would hang without it.
LIMIT = 10.0


class Boom(Exception):
    pass


@dataclass
class Side:
    """A context manager's record: what happened to it, and in which task."""

    name: str
    entering: asyncio.Event = field(default_factory=asyncio.Event)
    leaving: asyncio.Event = field(default_factory=asyncio.Event)
    events: list[str] = field(default_factory=list)
    tasks: set[asyncio.Task[object] | None] = field(default_factory=set)

    @asynccontextmanager
    async def manager(
        self,
        *,
        wait_entering: Side | None = None,
        wait_leaving: Side | None = None,
        fail_entering: bool = False,
    ) -> AsyncIterator[str]:
        self.tasks.add(asyncio.current_task())
        self.entering.set()
        try:
            if wait_entering is not None:
                await wait_entering.entering.wait()
            if fail_entering:
                raise Boom(f"{self.name} failed")
        except BaseException as exc:
            self.events.append(f"entering ended by {type(exc).__name__}")
            raise
        self.events.append("entered")
        try:
            yield self.name
        except BaseException as exc:
            self.events.append(f"left with {type(exc).__name__}")
            raise
        finally:
            self.tasks.add(asyncio.current_task())
            self.leaving.set()
            if wait_leaving is not None:
                await wait_leaving.leaving.wait()
        self.events.append("left")


async def test_both_are_entered_at_once_and_left_at_once_each_in_one_task() -> None:
    a, b = Side("a"), Side("b")
    # Each waits for the other to start entering, then to start leaving: one
    # after the other, this would never get through.
    with anyio.fail_after(LIMIT):
        async with entered_together(
            a.manager(wait_entering=b, wait_leaving=b), b.manager(wait_entering=a, wait_leaving=a)
        ) as values:
            assert values == ("a", "b")
    assert a.events == b.events == ["entered", "left"]
    assert len(a.tasks) == len(b.tasks) == 1  # entered and left in the same task
    assert a.tasks != b.tasks


async def test_the_blocks_exception_reaches_both_and_comes_out_as_it_was() -> None:
    a, b = Side("a"), Side("b")
    with anyio.fail_after(LIMIT), pytest.raises(Boom, match="in the block"):
        async with entered_together(a.manager(), b.manager()):
            raise Boom("in the block")
    assert a.events == b.events == ["entered", "left with Boom"]


async def test_one_failing_to_enter_cancels_the_other_still_entering() -> None:
    a, b, never = Side("a"), Side("b"), Side("never")
    with anyio.fail_after(LIMIT), pytest.raises(Boom, match="b failed"):  # not a group
        async with entered_together(
            a.manager(wait_entering=never), b.manager(wait_entering=a, fail_entering=True)
        ):
            pytest.fail("the block must not run")
    assert a.events == ["entering ended by CancelledError"]
    assert b.events == ["entering ended by Boom"]


async def test_one_failing_to_enter_leaves_the_other_with_that_failure() -> None:
    a, b = Side("a"), Side("b")

    @asynccontextmanager
    async def a_entered_first() -> AsyncIterator[str]:
        async with a.manager() as value:
            yield value

    @asynccontextmanager
    async def b_once_a_entered() -> AsyncIterator[str]:
        while "entered" not in a.events:
            await asyncio.sleep(0)
        async with b.manager(fail_entering=True) as value:
            yield value

    with anyio.fail_after(LIMIT), pytest.raises(Boom, match="b failed"):
        async with entered_together(a_entered_first(), b_once_a_entered()):
            pytest.fail("the block must not run")
    assert a.events == ["entered", "left with Boom"]
    assert b.events == ["entering ended by Boom"]


async def test_a_cancellation_while_entering_reaches_both() -> None:
    a, b, never = Side("a"), Side("b"), Side("never")
    with anyio.move_on_after(0.2) as scope:
        async with entered_together(a.manager(wait_entering=never), b.manager()):
            pytest.fail("the block must not run")
    assert scope.cancelled_caught
    assert a.events == ["entering ended by CancelledError"]
    assert b.events == ["entered", "left with CancelledError"]


async def test_a_cancellation_in_the_block_reaches_both() -> None:
    a, b = Side("a"), Side("b")
    with anyio.move_on_after(0.2) as scope:
        async with entered_together(a.manager(), b.manager()):
            await anyio.sleep(LIMIT)
    assert scope.cancelled_caught
    assert a.events == b.events == ["entered", "left with CancelledError"]


async def test_an_error_leaving_comes_out() -> None:
    @asynccontextmanager
    async def fails_leaving() -> AsyncIterator[str]:
        yield "x"
        raise Boom("leaving")

    a = Side("a")
    with anyio.fail_after(LIMIT), pytest.raises(Boom, match="leaving"):
        async with entered_together(a.manager(), fails_leaving()):
            pass
    assert a.events == ["entered", "left"]


async def test_in_turn_is_the_plain_nesting() -> None:
    a, b = Side("a"), Side("b")
    with anyio.fail_after(LIMIT), pytest.raises(Boom):
        async with entered_in_turn(a.manager(), b.manager()) as values:
            assert values == ("a", "b")
            assert a.tasks == b.tasks  # this task
            raise Boom
    assert a.events == b.events == ["entered", "left with Boom"]
