"""Where a provider runs the app's code: never on the server's event loop.

A sync handler runs in a daemon thread of its own. Async code (an async
handler, the lifespan) runs on the app's own event loop, in a daemon thread:
an ``async def`` compute that blocks its loop (``time.sleep`` in a loop, a long
step without an await) then blocks only that loop, and the server's loop goes
on answering Health and Shutdown and keeps the hard deadline. The lifespan
runs on the app's loop too, so that what it makes (a client session, a lock)
belongs to the loop the handlers run on.

On cancellation a sync handler is abandoned at once (it sees its context's
flag); an async one is cancelled on its loop and abandoned if it has not
ended within ``CANCEL_WAIT`` (it swallows the cancellation, or blocks its
loop); serve.py ends the process anyway. This
does what anyio's ``to_thread.run_sync(..., abandon_on_cancel=True)`` does,
without importing anyio (~20 ms per provider start). Standard library only.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any, cast

from .._handlers import is_async
from .._registry import Registry

#: How long a cancelled async handler may take to end before it is abandoned (its
#: cleanup runs meanwhile); well within serve's hard deadline.
CANCEL_WAIT = 0.5


def _settle(future: asyncio.Future[object], result: object, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled and abandoned the work
        return
    if isinstance(error, asyncio.CancelledError):
        future.cancel()
    elif error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _reporter(
    caller: asyncio.AbstractEventLoop,
    future: asyncio.Future[object],
    ended: asyncio.Event | None = None,
) -> Callable[[object, BaseException | None], None]:
    """A thread-safe way to settle ``future`` (of the ``caller`` loop) and set ``ended``."""

    def settle(result: object, error: BaseException | None) -> None:
        _settle(future, result, error)
        if ended is not None:
            ended.set()

    def report(result: object, error: BaseException | None) -> None:
        with suppress(RuntimeError):  # the loop is closed: nobody waits for this result
            caller.call_soon_threadsafe(settle, result, error)

    return report


async def in_thread(func: Callable[..., object], *args: object) -> object:
    """Run a sync ``func(*args)`` in a daemon thread of its own, in a copy of our context."""
    caller = asyncio.get_running_loop()
    future: asyncio.Future[object] = caller.create_future()
    report = _reporter(caller, future)
    context = contextvars.copy_context()  # as anyio does: the handler sees our context

    def work() -> None:
        result: object = None
        error: BaseException | None = None
        try:
            result = context.run(func, *args)
        except BaseException as exc:  # handed to the awaiting task, like anyio does
            error = exc
        report(result, error)

    threading.Thread(target=work, name="golem_apps compute", daemon=True).start()
    return await future


def _cancel_and_stop(loop: asyncio.AbstractEventLoop) -> None:  # on the app's loop
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        loop.stop()
        return
    for task in tasks:
        task.cancel()
    asyncio.gather(*tasks, return_exceptions=True).add_done_callback(lambda _: loop.stop())
    loop.call_later(CANCEL_WAIT, loop.stop)


def _run_until_stopped(loop: asyncio.AbstractEventLoop) -> None:
    try:
        loop.run_forever()
    finally:
        loop.close()


class AppLoop:
    """The app's own event loop, started on first use in a daemon thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def _started(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_run_until_stopped, args=(loop,))
            thread.name = "golem_apps app loop"
            thread.daemon = True
            thread.start()
            self._loop = loop
        return self._loop

    async def run(self, func: Callable[..., Awaitable[object]], *args: object) -> object:
        """Await ``func(*args)`` on the app's loop, in a copy of our context."""
        loop = self._started()
        caller = asyncio.get_running_loop()
        future: asyncio.Future[object] = caller.create_future()
        ended = asyncio.Event()  # set when the app's task has ended (not when we stop waiting)
        report = _reporter(caller, future, ended)
        context = contextvars.copy_context()
        tasks: list[asyncio.Task[object]] = []

        def finished(task: asyncio.Task[object]) -> None:
            if task.cancelled():
                report(None, asyncio.CancelledError())
            elif (error := task.exception()) is not None:
                report(None, error)
            else:
                report(task.result(), None)

        def begin() -> None:  # on the app's loop
            try:
                coroutine = cast(Coroutine[Any, Any, object], context.run(func, *args))
                task = loop.create_task(coroutine, context=context)
            except BaseException as exc:  # calling it failed: no coroutine to run
                report(None, exc)
                return
            tasks.append(task)
            task.add_done_callback(finished)

        def cancel() -> None:  # on the app's loop
            for task in tasks:
                task.cancel()

        loop.call_soon_threadsafe(begin)
        try:
            return await future
        except asyncio.CancelledError:
            with suppress(RuntimeError):  # (the app's task may have ended already: no harm)
                loop.call_soon_threadsafe(cancel)
            # A moment to end (its cleanup runs), unless its loop is blocked or it goes on.
            await asyncio.wait({asyncio.ensure_future(ended.wait())}, timeout=CANCEL_WAIT)
            raise

    @asynccontextmanager
    async def lifespan(self, app: Registry) -> AsyncIterator[None]:
        """The app's lifespan, entered and left on the app's loop (if it has one)."""
        if not app.has_lifespan:
            yield
            return
        manager = app.run_lifespan()
        await self.run(manager.__aenter__)
        try:
            yield
        except BaseException as exc:
            if not await self.run(manager.__aexit__, type(exc), exc, exc.__traceback__):
                raise
        else:
            await self.run(manager.__aexit__, None, None, None)

    def close(self) -> None:
        """Cancel what still runs on the app's loop, and stop it once that ended.

        It stops at the latest ``CANCEL_WAIT`` later; a loop the app's code
        blocks stays with its daemon thread.
        """
        if self._loop is not None:
            with suppress(RuntimeError):
                self._loop.call_soon_threadsafe(_cancel_and_stop, self._loop)
            self._loop = None


async def call(func: Callable[..., object], *args: object, app_loop: AppLoop) -> object:
    """Run a handler off the server's loop: an async one on ``app_loop``, a sync one in a thread."""
    if is_async(func):
        return await app_loop.run(cast(Callable[..., Awaitable[Any]], func), *args)
    return await in_thread(func, *args)
