"""Rows of the results table, the machine's description and the markdown page."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from ._harness import Comparison


@dataclass(frozen=True)
class Row:
    """One figure: golem_apps (A) against its baseline (B), with its goal."""

    benchmark: str
    metric: str
    a: str
    b: str
    ratio: str
    goal: str
    met: bool | None  # None: a figure without a goal

    @classmethod
    def compared(
        cls,
        benchmark: str,
        c: Comparison,
        *,
        unit: str,
        scale: float = 1.0,
        digits: int = 1,
        goal: str = "",
        met: bool | None = None,
    ) -> Row:
        """A row from a comparison: medians with [min-max], and both ratios."""

        def show(s: object) -> str:
            from ._harness import Stats

            assert isinstance(s, Stats)
            return (
                f"{s.median * scale:.{digits}f} [{s.min * scale:.{digits}f}-"
                f"{s.max * scale:.{digits}f}] {unit}"
            )

        ratio = f"{c.median_ratio:.3f} (pairwise {c.pairwise_ratio:.3f})"
        return cls(benchmark, c.metric, show(c.a), show(c.b), ratio, goal, met)

    def markdown(self) -> str:
        """The row as a markdown table line."""
        verdict = {True: "yes", False: "**no**", None: ""}[self.met]
        cells = (self.benchmark, self.metric, self.a, self.b, self.ratio, self.goal, verdict)
        return "| " + " | ".join(cells) + " |"


HEADER = (
    "| benchmark | metric | golem_apps: median [min-max] | baseline: median [min-max] "
    "| ratio of medians | goal | met |\n|---|---|---|---|---|---|---|"
)


def machine() -> str:
    """CPU, cores, memory, OS, Python and load: what the figures were measured on."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
        f"Python {sys.version.split()[0]}; load average at start {load}"
    )


def today() -> str:
    """The date and time, UTC."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def table(rows: list[Row]) -> str:
    """The markdown table of ``rows``."""
    return "\n".join([HEADER, *(row.markdown() for row in rows)])
