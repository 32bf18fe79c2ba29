"""What the Requestor and Provider registries share: handler slots and the lifespan."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from ._exceptions import HandlerError
from ._handlers import check_signature

F = TypeVar("F", bound=Callable[..., Any])
Lifespan = Callable[[Any], AbstractAsyncContextManager[None]] | Callable[[Any], AsyncIterator[None]]


@asynccontextmanager
async def _no_lifespan(_app: object) -> AsyncIterator[None]:
    yield


def _accepts(func: Callable[..., object], arguments: tuple[str, ...]) -> bool:
    try:
        inspect.signature(func).bind(*arguments)
    except (TypeError, ValueError):
        return False
    return True


class Registry:
    """Handler slots of one app role; each slot holds at most one handler."""

    _role = "app"

    def __init__(self, *, lifespan: Lifespan | None = None) -> None:
        self._slots: dict[str, Callable[..., Any]] = {}
        self._params_types: dict[str, type] = {}
        self._lifespan: Callable[[Any], AbstractAsyncContextManager[None]] | None = None
        if lifespan is not None:
            self.add_lifespan(lifespan)

    def _register(
        self,
        slot: str,
        func: F,
        arguments: tuple[str, ...],
        *,
        typed: bool = False,
        params: object = None,
    ) -> F:
        label = f"@{self._role}.{slot}"
        params_type = None
        if typed and (params is not None or not _accepts(func, arguments)):
            # A typed handler (or a bad signature, which check_signature reports).
            from ._typed import params_type_of  # standard library only; pydantic comes later

            params_type = params_type_of(func, label, arguments, params)
            if params_type is not None:
                arguments = (*arguments, "params")
        check_signature(func, label, arguments)
        taken = self._slots.get(slot)
        if taken is not None:
            raise HandlerError(
                f"{label} is already registered ({getattr(taken, '__qualname__', taken)!r}); "
                f"an app has one {slot} handler"
            )
        self._slots[slot] = func
        if params_type is not None:
            self._params_types[slot] = params_type
        return func

    def params_type(self, slot: str) -> type | None:
        """The params type (dataclass, TypedDict, pydantic model) of ``slot``'s handler, or None."""
        return self._params_types.get(slot)

    def handler_args(self, slot: str, params: Mapping[str, Any], field: str) -> tuple[Any, ...]:
        """The arguments a handler takes after its context: ``(typed params,)`` or ``()``.

        A typed handler's params are validated with pydantic; a mismatch
        raises InvalidArgument naming ``field`` and each bad field.
        """
        params_type = self._params_types.get(slot)
        if params_type is None:
            return ()
        from ._typed import validate

        return (validate(params_type, params, field),)

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

    @property
    def has_lifespan(self) -> bool:
        """True once a lifespan is registered."""
        return self._lifespan is not None

    def run_lifespan(self) -> AbstractAsyncContextManager[None]:
        """Enter the registered lifespan (or a no-op one) around a server's life."""
        return (self._lifespan or _no_lifespan)(self)
