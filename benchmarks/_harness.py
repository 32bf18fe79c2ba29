"""The measuring harness: A and B alternate, after a warm-up, and are compared by medians.

The machine is shared and noisy, so absolute figures drift between runs; a
ratio of A to B measured in the same run, interleaved, is what we quote.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: One trial: metric name -> value (seconds, or a rate).
Sample = Mapping[str, float]


@dataclass(frozen=True)
class Stats:
    """Median, min and max of one metric of one side."""

    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Stats:
        """The statistics of ``values`` (not empty)."""
        return cls(statistics.median(values), min(values), max(values))


@dataclass(frozen=True)
class Comparison:
    """One metric of A against B over the same interleaved rounds."""

    metric: str
    a: Stats
    b: Stats
    #: Median over rounds of a_i / b_i.
    pairwise_ratio: float

    @property
    def median_ratio(self) -> float:
        """median(A) / median(B)."""
        return self.a.median / self.b.median


def compare(
    a: Callable[[], Sample],
    b: Callable[[], Sample],
    *,
    rounds: int,
    warmup: int = 1,
) -> dict[str, Comparison]:
    """Run ``warmup`` then ``rounds`` rounds of A then B (A B A B ...); compare each metric.

    Within a round the order alternates (A B, then B A) so that neither side
    always runs first after the other's leftovers.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    for _ in range(warmup):
        a()
        b()
    samples_a: list[Sample] = []
    samples_b: list[Sample] = []
    for i in range(rounds):
        if i % 2 == 0:
            samples_a.append(a())
            samples_b.append(b())
        else:
            samples_b.append(b())
            samples_a.append(a())
    result: dict[str, Comparison] = {}
    for metric in samples_a[0]:
        values_a = [s[metric] for s in samples_a]
        values_b = [s[metric] for s in samples_b]
        ratios = [x / y for x, y in zip(values_a, values_b, strict=True)]
        result[metric] = Comparison(
            metric, Stats.of(values_a), Stats.of(values_b), statistics.median(ratios)
        )
    return result


def format_comparison(
    name: str,
    label_a: str,
    label_b: str,
    comparisons: dict[str, Comparison],
    unit: str = "ms",
    scale: float = 1000.0,
) -> str:
    """Human-readable lines: each metric's median [min-max] of A and B and the ratios."""
    lines = [f"{name}: {label_a} (A) vs {label_b} (B)"]
    for c in comparisons.values():
        lines.append(
            f"  {c.metric:>14}: A {c.a.median * scale:8.1f} [{c.a.min * scale:.1f}-"
            f"{c.a.max * scale:.1f}] {unit}   B {c.b.median * scale:8.1f} "
            f"[{c.b.min * scale:.1f}-{c.b.max * scale:.1f}] {unit}   "
            f"A/B medians {c.median_ratio:.3f}, median of pairwise {c.pairwise_ratio:.3f}"
        )
    return "\n".join(lines)
