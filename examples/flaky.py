"""A failure-tolerant app: computations fail at random, the node retries them elsewhere.

Run it: ``python -m golem_apps.run examples.flaky --params '{"fail_rate": 0.3}'``
and see the retries in the summary; ``total.txt`` is right all the same.

Task params (all optional):

- ``parts``: how many parts (default 8);
- ``n``: the task sums ``k * k`` for ``k`` in ``range(n)`` (default 100000);
- ``fail_rate``: the fraction of computations that fail (default 0.3, below 1);
- ``cheat_slot``: the "wrong answer" mode: one dishonest machine, the first
  that computes in the local runner's provider slot with this number (1, 2,
  ...), returns wrong sums without failing. It is one node: a machine that
  later takes the slot (after a ban, say) is honest. It knows its slot and
  node from its work dir (``providers/provider<N>-<id>/``), which only the
  local runner lays out so, and claims the part with a marker file there.
  ``examples/voting.py`` outvotes and bans it.

Each part sums the squares of its slice of ``range(n)``; verify recomputes the
slice; merge adds the parts into ``total.txt``.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from golem_apps import (
    ComputeContext,
    MergeContext,
    Part,
    Provider,
    Requestor,
    TaskContext,
    VerifyContext,
)

requestor = Requestor("flaky", image="golem/examples-flaky", tag="0.1")
provider = Provider()

OUTPUT = "total.txt"


def _params(params: dict[str, Any], max_subtasks: int) -> tuple[int, int, float]:
    # 8 parts, or as many subtasks as the node user asked for if fewer.
    parts = params.get("parts", min(8, max_subtasks or 8))
    n = params.get("n", 100_000)
    fail_rate = params.get("fail_rate", 0.3)
    for name, value in (("parts", parts), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"param {name!r} must be a positive integer, got {value!r}")
    if isinstance(fail_rate, bool) or not isinstance(fail_rate, int | float):
        raise ValueError(f"param 'fail_rate' must be a number, got {fail_rate!r}")
    if not 0 <= fail_rate < 1:
        raise ValueError(f"param 'fail_rate' must be at least 0 and below 1, got {fail_rate}")
    return parts, n, float(fail_rate)


def sum_of_squares(start: int, stop: int) -> int:
    """The sum of ``k * k`` for ``k`` in ``range(start, stop)``."""
    return sum(k * k for k in range(start, stop))


@requestor.task
def split(task: TaskContext) -> Iterator[Part]:
    """One part per slice of ``range(n)``."""
    yield from slices(task.params, task.max_subtasks)


def slices(task_params: dict[str, Any], max_subtasks: int = 0) -> Iterator[Part]:
    """The task's parts: one per slice of ``range(n)``, at most ``max_subtasks`` by default."""
    parts, n, fail_rate = _params(task_params, max_subtasks)
    cheat = task_params.get("cheat_slot")
    if cheat is not None and (isinstance(cheat, bool) or not isinstance(cheat, int)):
        raise ValueError(f"param 'cheat_slot' must be an integer, got {cheat!r}")
    for i in range(parts):
        params = {"start": n * i // parts, "stop": n * (i + 1) // parts, "fail_rate": fail_rate}
        if cheat is not None:
            params["cheat_slot"] = cheat
        yield Part(params=params, name=f"slice-{i}")


def is_cheater(ctx: ComputeContext) -> bool:
    """True on the one dishonest node: the first to compute in slot ``cheat_slot``."""
    slot = ctx.params.get("cheat_slot")
    node_dir = ctx.task_dir.parent  # providers/<node id>/
    if slot is None or not node_dir.name.startswith(f"provider{slot}-"):
        return False
    # The first machine of the slot claims the part; link() makes exactly one win.
    marker = node_dir.parent / f".cheater-{ctx.task_id}"
    if not marker.exists():
        claim = node_dir.parent / f".claim-{uuid.uuid4().hex}"
        claim.write_text(node_dir.name)
        try:
            os.link(claim, marker)
        except FileExistsError:
            pass
        finally:
            claim.unlink()
    return marker.read_text() == node_dir.name


@provider.compute
def compute(ctx: ComputeContext) -> Path:
    """Sum the squares of the slice, unless this attempt is one that fails."""
    if random.random() < ctx.params["fail_rate"]:
        raise RuntimeError("simulated failure (fail_rate)")
    out = ctx.subtask_dir / "sum.txt"
    value = sum_of_squares(ctx.params["start"], ctx.params["stop"])
    if is_cheater(ctx):
        value += 1  # a wrong answer, and no error: only a check or a vote catches it
    out.write_text(str(value))
    return out


@requestor.verify
def check(result: VerifyContext) -> bool:
    """The slice's sum, recomputed."""
    text = result.result_path.read_text().strip()
    expected = sum_of_squares(result.params["start"], result.params["stop"])
    return text == str(expected)


@requestor.merge
def total(task: MergeContext) -> None:
    """Add the slices' sums."""
    value = sum(int(part.path.read_text()) for part in task.results)
    (task.outputs_dir / OUTPUT).write_text(f"{value}\n")
