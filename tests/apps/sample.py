"""A small app for the tests: parts from params, providers upper-case their part's text."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from golem_apps import ComputeContext, Part, Provider, Requestor, TaskContext

requestor = Requestor("sample", image="golem/sample", tag="1.0", min_memory_mib=128.0)
provider = Provider()


@requestor.task
def split(task: TaskContext) -> list[Part]:
    texts: list[str] = task.params.get("texts", ["a", "b"])
    parts = [Part(params={"text": text, "index": i}, name=f"p{i}") for i, text in enumerate(texts)]
    if task.params.get("empty_part"):
        parts.append(Part(params={}, name="empty"))
    return parts


@requestor.benchmark
def requestor_benchmark() -> float:
    return 42.0


@provider.compute
def compute(ctx: ComputeContext) -> Path:
    params: dict[str, Any] = ctx.params
    if params.get("fail"):
        raise RuntimeError("asked to fail")
    sleep = float(params.get("sleep", 0))
    deadline = time.monotonic() + sleep
    while time.monotonic() < deadline and not ctx.cancelled:
        time.sleep(0.01)
    out = ctx.subtask_dir / "result.txt"
    out.write_text(str(params.get("text", "")).upper() or "EMPTY")
    return out


@provider.benchmark
def provider_benchmark() -> float:
    return 7.5
