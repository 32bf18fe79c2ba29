"""The cluster benchmark's app for big results: one part whose result has ``size`` bytes."""

from __future__ import annotations

import os
from pathlib import Path

from golem_apps import ComputeContext, Provider, Requestor, TaskContext

requestor = Requestor("big", image="golem/big", tag="1.0")
provider = Provider()

#: The provider writes its result a block at a time (it must not hold it in memory either).
BLOCK = 8 << 20


@requestor.task
def split(task: TaskContext) -> list[dict[str, object]]:
    """One part: the result's size."""
    return [{"size": int(task.params.get("size", 1024))}]


@provider.compute
def compute(ctx: ComputeContext) -> Path:
    """``size`` bytes of non-zero data (not a sparse file) in ``result.bin``."""
    size = int(ctx.params["size"])
    block = os.urandom(min(BLOCK, size))
    out = ctx.subtask_dir / "result.bin"
    with out.open("wb") as file:
        left = size
        while left > 0:
            file.write(block[: min(left, len(block))])
            left -= len(block)
    return out
