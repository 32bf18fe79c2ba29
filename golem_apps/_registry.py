"""What the Requestor and Provider registries share: handler slots and the lifespan."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from ._exceptions import HandlerError
from ._handlers import check_signature

F = TypeVar("F", bound=Callable[..., Any])
Lifespan = Callable[[Any], AbstractAsyncContextManager[None]] | Callable[[Any], AsyncIterator[None]]


@asynccontextmanager
async def _no_lifespan(_app: object) -> AsyncIterator[None]:
    yield


class Registry:
    """Handler slots of one app role; each slot holds at most one handler."""

    _role = "app"

    def __init__(self, *, lifespan: Lifespan | None = None) -> None:
        self._slots: dict[str, Callable[..., Any]] = {}
        self._lifespan: Callable[[Any], AbstractAsyncContextManager[None]] | None = None
        if lifespan is not None:
            self.add_lifespan(lifespan)

    def _register(self, slot: str, func: F, arguments: tuple[str, ...]) -> F:
        label = f"@{self._role}.{slot}"
        check_signature(func, label, arguments)
        taken = self._slots.get(slot)
        if taken is not None:
            raise HandlerError(
                f"{label} is already registered ({getattr(taken, '__qualname__', taken)!r}); "
                f"an app has one {slot} handler"
            )
        self._slots[slot] = func
        return func

    def handler(self, slot: str) -> Callable[..., Any] | None:
        """The handler registered for ``slot``, or None."""
        return self._slots.get(slot)

    def add_lifespan(self, lifespan: Lifespan) -> None:
        """Register the lifespan: an async context manager factory taking the registry.

        An async generator function is accepted too and wrapped with
        ``contextlib.asynccontextmanager``. Code before its ``yield`` runs
        before the server accepts calls; code after it once the server stopped.
        """
        if self._lifespan is not None:
            raise HandlerError(f"@{self._role}.lifespan is already registered")
        check_signature(lifespan, f"@{self._role}.lifespan", ("app",))
        if inspect.isasyncgenfunction(lifespan):
            self._lifespan = asynccontextmanager(lifespan)
        else:
            self._lifespan = lifespan  # type: ignore[assignment]

    def lifespan(self, func: F) -> F:
        """Decorator form of :meth:`add_lifespan`; returns the function unchanged."""
        self.add_lifespan(func)
        return func

    def run_lifespan(self) -> AbstractAsyncContextManager[None]:
        """Enter the registered lifespan (or a no-op one) around a server's life."""
        return (self._lifespan or _no_lifespan)(self)
