"""A test app whose computations report progress, and may hang without a heartbeat.

Task params: ``parts`` (default 2), ``steps`` (progress reports per part,
default 4), ``pause`` (seconds between reports, default 0), ``hang_once``: a
folder; the first attempt of each part reports 25% once and then stays silent
until cancelled (a hung provider), later attempts compute normally.
"""

from __future__ import annotations

import time
from pathlib import Path

from golem_apps import ComputeContext, Part, Provider, Requestor, TaskContext

requestor = Requestor("progress-app", image="test/progress", tag="0.1")
provider = Provider()

#: How long a hung computation waits to be cancelled before giving up (safety only).
HANG_LIMIT = 60.0


@requestor.task(max_retries=10)
def split(task: TaskContext) -> list[Part]:
    """``parts`` parts, each with the task's other params."""
    parts = int(task.params.get("parts", 2))
    common = {key: value for key, value in task.params.items() if key != "parts"}
    return [Part(params={**common, "index": i}, name=f"part-{i}") for i in range(parts)]


@provider.compute
def compute(ctx: ComputeContext) -> Path:
    """Report ``steps`` progress steps, or hang after one report (first attempt, hang_once)."""
    hang_dir = ctx.params.get("hang_once")
    if hang_dir is not None:
        marker = Path(hang_dir) / f"{ctx.params['index']}.hung"
        if not marker.exists():
            marker.write_text(ctx.subtask_id)
            ctx.progress(0.25, "about to hang")
            deadline = time.monotonic() + HANG_LIMIT
            while not ctx.cancelled and time.monotonic() < deadline:
                time.sleep(0.02)  # no heartbeat: the runner must notice and replace us
            raise RuntimeError("hung computation cancelled")
    steps = int(ctx.params.get("steps", 4))
    for step in range(1, steps + 1):
        time.sleep(float(ctx.params.get("pause", 0)))
        ctx.progress(step / steps, f"step {step}/{steps}")
    out = ctx.subtask_dir / "out.txt"
    out.write_text(f"part {ctx.params['index']} done")
    return out
