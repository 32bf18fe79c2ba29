"""Redundancy with a vote: each part computed by three providers, the majority wins.

Run it: ``python -m golem_apps.run examples.voting --providers 4 --params '{"cheat_slot": 1}'``.
The first machine in provider slot 1 returns wrong sums
(``examples/flaky.py``'s "wrong answer" mode; a machine that replaces it is
honest). The requestor cannot check a sum cheaply, so it does not try: each part
is computed on three distinct nodes (``redundancy=3``), the two honest results
agree and win, the wrong one fails, outvoted, and after two such failures the
node is banned from the task (``ban_after=2``). ``total.txt`` is right all the
same; the summary lists the nodes and the ban.

Task params: those of ``examples/flaky.py`` (``parts``, ``n``, ``fail_rate``
default 0 here, ``cheat_slot``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from examples.flaky import OUTPUT, provider, slices
from golem_apps import MergeContext, Part, Requestor, TaskContext, VerifyContext

__all__ = ["provider", "requestor"]

requestor = Requestor("voting", image="golem/examples-voting", tag="0.1")


@requestor.task(redundancy=3, ban_after=2, max_retries=20)
def split(task: TaskContext) -> Iterator[Part]:
    """flaky's slices, without random failures unless asked for."""
    params: dict[str, Any] = {"fail_rate": 0, **task.params}
    yield from slices(params, task.max_subtasks)


@requestor.compare
def same_sum(a: VerifyContext, b: VerifyContext) -> bool:
    """Two results agree when they hold the same number (whitespace aside)."""
    return a.result_path.read_text().strip() == b.result_path.read_text().strip()


@requestor.merge
def total(task: MergeContext) -> None:
    """Add the slices' sums (each the majority's)."""
    value = sum(int(part.path.read_text()) for part in task.results)
    (task.outputs_dir / OUTPUT).write_text(f"{value}\n")
