"""The provider path's import time, against the baseline provider's, in fresh processes.

A: what ``python -m golem_apps.serve benchmarks.apps.trivial provider``
imports before it serves. B: what ``benchmarks/baselines/provider.py``
imports (asyncio, grpclib's server, betterproto and the generated modules).
The floor: what any grpclib provider imports (asyncio, ssl, grpclib's server
and its health service), compared with A in rounds of its own. Each is
timed inside a fresh interpreter around the imports alone. The
``python -X importtime`` breakdown of the provider process is kept too.
"""

from __future__ import annotations

import re
import subprocess
import sys

from ._harness import Comparison, Sample, compare
from .provider_cycle import ROOT, ensure_bytecode

_TIMED = """
import time
start = time.perf_counter()
{imports}
print(time.perf_counter() - start)
"""

PROVIDER_IMPORTS = "import golem_apps.serve, golem_apps.server._provider, benchmarks.apps.trivial"
BASELINE_IMPORTS = "import benchmarks.baselines.provider"
FLOOR_IMPORTS = "import asyncio, ssl, grpclib.server, grpclib.health.service"
#: The metric of the comparison with the floor.
FLOOR = "import (baseline: asyncio, ssl, grpclib server and health only)"


def timed_import(imports: str, metric: str = "import") -> Sample:
    """Seconds spent importing ``imports`` in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _TIMED.format(imports=imports)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return {metric: float(out.stdout)}


def run(rounds: int = 20) -> dict[str, Comparison]:
    """The provider path's imports (A) against the baseline's (B), and against the floor."""
    ensure_bytecode()
    bare = compare(
        lambda: timed_import(PROVIDER_IMPORTS),
        lambda: timed_import(BASELINE_IMPORTS),
        rounds=rounds,
        warmup=2,
    )
    floor = compare(
        lambda: timed_import(PROVIDER_IMPORTS, FLOOR),
        lambda: timed_import(FLOOR_IMPORTS, FLOOR),
        rounds=rounds,
        warmup=2,
    )
    return {**bare, **floor}


def importtime_top(
    imports: str = PROVIDER_IMPORTS, count: int = 14
) -> list[tuple[str, int, float]]:
    """The heaviest modules imported at depth 0 or 1: (name, depth, cumulative ms)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", imports],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = []
    for line in out.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ( *)(\S+)", line)
        if match and len(match.group(2)) <= 2:  # two spaces per level of nesting
            rows.append((match.group(3), len(match.group(2)) // 2, int(match.group(1)) / 1000))
    return sorted(rows, key=lambda row: -row[2])[:count]


if __name__ == "__main__":
    from ._harness import format_comparison

    print(format_comparison("imports", "provider path", "baseline", run()))
    for name, depth, ms in importtime_top():
        print(f"{ms:8.1f} ms  {'  ' * depth}{name}")
