"""Where a provider runs the app's code: sync handlers in a thread, async ones (and the
lifespan) on the app's own loop; cancellation returns at once; the server's loop stays free."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from golem_apps import Provider
from golem_apps.server._apploop import AppLoop, call

pytestmark = pytest.mark.anyio

var: contextvars.ContextVar[str] = contextvars.ContextVar("var")


@pytest.fixture
def app_loop() -> Iterator[AppLoop]:
    loop = AppLoop()
    yield loop
    loop.close()


async def test_sync_handler_runs_in_a_thread_with_our_context(app_loop: AppLoop) -> None:
    var.set("outer")
    seen: list[object] = []

    def handler(x: int) -> int:
        seen.append((threading.current_thread() is threading.main_thread(), var.get()))
        return x * 2

    assert await call(handler, 21, app_loop=app_loop) == 42
    assert seen == [(False, "outer")]


async def test_async_handler_runs_on_a_loop_of_its_own_with_our_context(
    app_loop: AppLoop,
) -> None:
    var.set("outer")
    ours = asyncio.get_running_loop()
    seen: list[object] = []

    async def handler(x: int) -> int:
        seen.append((asyncio.get_running_loop() is ours, threading.current_thread().name))
        seen.append(var.get())
        return x + 1

    assert await call(handler, 1, app_loop=app_loop) == 2
    assert seen == [(False, "golem_apps app loop"), "outer"]


async def test_errors_reach_the_caller(app_loop: AppLoop) -> None:
    def sync() -> None:
        raise KeyError("sync")

    async def async_() -> None:
        raise KeyError("async")

    for handler, text in ((sync, "sync"), (async_, "async")):
        with pytest.raises(KeyError, match=text):
            await call(handler, app_loop=app_loop)


async def test_an_async_handler_blocking_its_loop_leaves_ours_free(app_loop: AppLoop) -> None:
    """``time.sleep`` in an async handler: our loop still runs; cancelling abandons it."""
    release = threading.Event()
    started = threading.Event()

    async def blocking() -> str:
        started.set()
        while not release.is_set():
            time.sleep(0.01)  # noqa: ASYNC251 - blocking its own loop is the point
        return "late"

    task = asyncio.ensure_future(call(blocking, app_loop=app_loop))
    assert await asyncio.to_thread(started.wait, 10)
    ticks = 0
    for _ in range(5):  # our loop goes on while the handler blocks its own
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 5 and not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task  # after CANCEL_WAIT, although the handler's loop is still blocked
    assert not release.is_set()
    release.set()


async def test_cancelling_cancels_the_async_handler_on_its_loop(app_loop: AppLoop) -> None:
    cancelled = threading.Event()
    started = threading.Event()

    async def waiting() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.ensure_future(call(waiting, app_loop=app_loop))
    assert await asyncio.to_thread(started.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(cancelled.wait, 10)


async def test_cancellation_abandons_a_sync_handler(app_loop: AppLoop) -> None:
    release = threading.Event()
    finished = threading.Event()

    def handler() -> str:
        release.wait(10)
        finished.set()
        return "late"

    task = asyncio.ensure_future(call(handler, app_loop=app_loop))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not finished.is_set()  # returned while the thread still runs
    release.set()
    assert await asyncio.to_thread(finished.wait, 10)
    await asyncio.sleep(0.05)  # its late result is dropped without error


async def test_the_lifespan_runs_on_the_handlers_loop(app_loop: AppLoop) -> None:
    """What the lifespan makes belongs to the loop the async handlers run on."""
    app = Provider()
    made: dict[str, object] = {}

    @app.lifespan
    async def lifespan(_: Provider) -> AsyncIterator[None]:
        made["loop"] = asyncio.get_running_loop()
        made["lock"] = asyncio.Lock()
        yield
        made["left"] = asyncio.get_running_loop()

    async def handler() -> bool:
        lock = made["lock"]
        assert isinstance(lock, asyncio.Lock)
        async with lock:  # bound to this loop: would fail on another one
            return asyncio.get_running_loop() is made["loop"]

    async with app_loop.lifespan(app):
        assert made["loop"] is not asyncio.get_running_loop()
        assert await call(handler, app_loop=app_loop) is True
    assert made["left"] is made["loop"]


async def test_a_failing_lifespan_exit_reaches_the_caller(app_loop: AppLoop) -> None:
    app = Provider()

    @app.lifespan
    async def lifespan(_: Provider) -> AsyncIterator[None]:
        yield
        raise RuntimeError("on the way out")

    with pytest.raises(RuntimeError, match="on the way out"):
        async with app_loop.lifespan(app):
            pass


async def test_no_lifespan_no_app_loop() -> None:
    """A sync app without a lifespan never starts the app's loop (its start-up pays nothing)."""
    app_loop = AppLoop()
    before = set(threading.enumerate())
    async with app_loop.lifespan(Provider()):
        assert await call(lambda: 1, app_loop=app_loop) == 1
        started = set(threading.enumerate()) - before
    assert "golem_apps app loop" not in {thread.name for thread in started}


async def test_closing_cancels_what_still_runs_on_the_app_loop() -> None:
    """Work abandoned by its caller still gets its cancellation before the loop stops."""
    app_loop = AppLoop()
    started = threading.Event()
    cleaned = threading.Event()

    async def waiting() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.set()

    task = asyncio.ensure_future(call(waiting, app_loop=app_loop))
    assert await asyncio.to_thread(started.wait, 10)
    app_loop.close()  # the caller has not even been cancelled yet
    assert await asyncio.to_thread(cleaned.wait, 10)
    with pytest.raises(asyncio.CancelledError):
        await task
