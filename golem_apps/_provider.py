"""The Provider registry: the handlers of a one-shot provider app."""

from __future__ import annotations

from collections.abc import Callable
from typing import overload

from ._registry import F, Lifespan, Registry


class Provider(Registry):
    """The provider side of an app: ``@provider.compute`` and ``@provider.benchmark``.

    Serve it with ``python -m golem_apps.serve MODULE provider PORT`` or
    :func:`golem_apps.serve_provider`.
    """

    _role = "provider"

    def __init__(self, *, lifespan: Lifespan | None = None) -> None:
        super().__init__(lifespan=lifespan)

    def add_compute(self, func: F, *, params: type | None = None) -> F:
        """Register the Compute handler: ``(ctx: ComputeContext) -> result file path``.

        Typed params: a handler ``(ctx, params)`` gets the subtask params
        validated as ``params`` (a dataclass, TypedDict or pydantic model; by
        default the annotation of its second parameter). Invalid subtask params
        are answered with INVALID_ARGUMENT naming the bad fields.
        """
        return self._register("compute", func, ("ctx",), typed=True, params=params)

    @overload
    def compute(self, func: F, /) -> F: ...
    @overload
    def compute(self, func: None = None, /, *, params: type | None = None) -> Callable[[F], F]: ...
    def compute(
        self, func: F | None = None, /, *, params: type | None = None
    ) -> F | Callable[[F], F]:
        """Decorator form of :meth:`add_compute`, bare or with ``params=``; returns the function."""

        def decorator(f: F) -> F:
            return self.add_compute(f, params=params)

        return decorator if func is None else decorator(func)

    def add_benchmark(self, func: F) -> F:
        """Register the RunBenchmark handler: ``() -> float`` score of this machine."""
        return self._register("benchmark", func, ())

    def benchmark(self, func: F) -> F:
        """Decorator form of :meth:`add_benchmark`; returns the function unchanged."""
        return self.add_benchmark(func)
