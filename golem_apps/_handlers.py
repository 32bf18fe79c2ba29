"""Checking handler signatures at decoration time and calling handlers.

Sync handlers run in a worker thread (anyio.to_thread) so that they never
block the event loop; async ones are awaited. On the provider's start-up path:
only light imports here.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ._exceptions import HandlerError
from ._task import Part

T = TypeVar("T")

#: How many parts a sync split generator yields per trip to its worker thread.
PART_BATCH = 512
#: Worker threads sync handlers may hold at once. They have their own pool
#: (anyio's default one serves the engine and file I/O), so that handlers that
#: hang cannot starve the bookkeeping of other tasks.
HANDLER_THREADS = 40

if TYPE_CHECKING:
    from anyio import CapacityLimiter
    from anyio.lowlevel import RunVar

_limiter: RunVar[CapacityLimiter] | None = None


def handler_limiter() -> CapacityLimiter:
    """The current event loop's limiter of sync handler threads."""
    global _limiter
    from anyio import CapacityLimiter
    from anyio.lowlevel import RunVar

    if _limiter is None:
        _limiter = RunVar("golem_apps_handler_threads")
    try:
        return _limiter.get()
    except LookupError:
        limiter = CapacityLimiter(HANDLER_THREADS)
        _limiter.set(limiter)
        return limiter


def check_signature(func: Callable[..., object], slot: str, arguments: tuple[str, ...]) -> None:
    """Raise HandlerError unless ``func`` can be called with exactly ``arguments``."""
    if not callable(func):
        raise HandlerError(f"{slot} expects a function, got {type(func).__name__}")
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # builtins without a signature: trust them
        return
    try:
        signature.bind(*arguments)
    except TypeError:
        name = getattr(func, "__qualname__", repr(func))
        wanted = ", ".join(arguments) if arguments else "no arguments"
        raise HandlerError(
            f"{slot} handler {name}{signature} must take exactly ({wanted})"
        ) from None


def is_async(func: Callable[..., object]) -> bool:
    """True for coroutine functions, also behind functools.partial or a callable object."""
    while isinstance(func, partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


async def call(
    func: Callable[..., T | Awaitable[T]], *args: Any, abandon_on_cancel: bool = False
) -> T:
    """Await an async handler, or run a sync one in a worker thread.

    ``abandon_on_cancel``: on cancellation, return at once and leave a sync
    handler's thread to notice its cancellation flag (the provider does this).
    """
    if is_async(func):
        return await cast(Callable[..., Awaitable[T]], func)(*args)
    from anyio import to_thread  # deferred: the provider pays for anyio only when computing

    return await to_thread.run_sync(
        partial(cast(Callable[..., T], func), *args),
        abandon_on_cancel=abandon_on_cancel,
        limiter=handler_limiter(),
    )


def to_part(item: object) -> Part:
    """A yielded part: a Part, or a mapping taken as the params of an unnamed part.

    Params given as a dataclass or pydantic model instance (in a Part, or
    yielded bare) become JSON objects; see ``golem_apps._typed``.
    """
    if isinstance(item, Part):
        if isinstance(item.params, Mapping):
            return item
    elif isinstance(item, Mapping):
        return Part(params=item)
    from ._typed import part_from

    return part_from(item)


async def iterate_parts(func: Callable[..., Any], *args: Any) -> AsyncIterator[Part]:
    """Run a split handler and yield its parts without holding them all at once.

    The handler may be an async generator, a sync generator, or a (sync or
    async) function returning an iterable. Sync iteration happens in a worker
    thread, a batch at a time.
    """
    if inspect.isasyncgenfunction(func):
        async for item in func(*args):
            yield to_part(item)
        return
    result = await call(func, *args)
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield to_part(item)
        return
    if not isinstance(result, Iterable):
        raise TypeError(
            f"a task handler must return an iterable of parts, not {type(result).__name__}"
        )
    if isinstance(result, list | tuple):
        for item in result:
            yield to_part(item)
        return
    from anyio import to_thread

    iterator: Iterator[object] = iter(result)
    while True:
        batch = await to_thread.run_sync(
            lambda: list(islice(iterator, PART_BATCH)), limiter=handler_limiter()
        )
        for item in batch:
            yield to_part(item)
        if len(batch) < PART_BATCH:
            return
