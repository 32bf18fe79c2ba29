"""The benchmarks' app: a trivial compute and a trivial async benchmark handler."""

from __future__ import annotations

from pathlib import Path

from golem_apps import ComputeContext, Provider, Requestor, TaskContext

requestor = Requestor("trivial", image="golem/trivial", tag="1.0")
provider = Provider()


@requestor.task
def split(task: TaskContext) -> list[dict[str, object]]:
    """One part per text."""
    texts: list[str] = task.params.get("texts", ["a"])
    return [{"text": text} for text in texts]


@requestor.benchmark
async def requestor_benchmark() -> float:
    """A constant score: the dispatch benchmark measures the framework, not the handler."""
    return 1.0


@provider.compute
def compute(ctx: ComputeContext) -> Path:
    """Upper-case the part's text into ``<subtask dir>/<subtask id>.txt``."""
    out = ctx.subtask_dir / f"{ctx.subtask_id}.txt"
    out.write_text(str(ctx.params.get("text", "")).upper())
    return out
