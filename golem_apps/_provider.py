"""The Provider registry: the handlers of a one-shot provider app."""

from __future__ import annotations

from ._registry import F, Lifespan, Registry


class Provider(Registry):
    """The provider side of an app: ``@provider.compute`` and ``@provider.benchmark``.

    Serve it with ``python -m golem_apps.serve MODULE provider PORT`` or
    :func:`golem_apps.serve_provider`.
    """

    _role = "provider"

    def __init__(self, *, lifespan: Lifespan | None = None) -> None:
        super().__init__(lifespan=lifespan)

    def add_compute(self, func: F) -> F:
        """Register the Compute handler: ``(ctx: ComputeContext) -> result file path``."""
        return self._register("compute", func, ("ctx",))

    def compute(self, func: F) -> F:
        """Decorator form of :meth:`add_compute`; returns the function unchanged."""
        return self.add_compute(func)

    def add_benchmark(self, func: F) -> F:
        """Register the RunBenchmark handler: ``() -> float`` score of this machine."""
        return self._register("benchmark", func, ())

    def benchmark(self, func: F) -> F:
        """Decorator form of :meth:`add_benchmark`; returns the function unchanged."""
        return self.add_benchmark(func)
