"""What a run returns, and the summary the command prints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._taskstatus import TaskStatus


@dataclass(frozen=True)
class Failure:
    """One failed subtask: which provider slot computed it and why it failed."""

    subtask_id: str
    node_id: str
    reason: str


@dataclass(frozen=True)
class RunResult:
    """The outcome of a task run to completion by :func:`golem_apps.runner.run_task`."""

    task_id: str
    parts: int
    """Parts verified."""
    subtasks: int
    """Subtasks handed out (attempts, successful or not)."""
    failures: tuple[Failure, ...]
    """Every failed subtask, in order."""
    wall_time: float
    """Seconds from start to the outputs being in place."""
    outputs_dir: Path
    """Where the task's outputs are: ``out`` if given, else the requestor's task_outputs."""
    output_files: tuple[Path, ...]
    """The output files, inside ``outputs_dir``."""
    work_dir: Path | None
    """The runner's work dir (logs, requestor and provider dirs); None once removed."""
    status: TaskStatus | None = None
    """The requestor's last status of the task (its ``status.json``): nodes, bans, retries."""
    requestor_restarts: int = 0
    """Times the requestor died and was restarted on its work dir."""
    resumed: bool = False
    """The run continued an unfinished task that an earlier run left in its work dir."""
    temporary: bool = False
    """Whether ``work_dir`` is a temporary folder the run made and left behind."""

    @property
    def retries(self) -> int:
        """Subtasks beyond those a verified part needs (``redundancy`` each): recomputations."""
        redundancy = self.status.redundancy if self.status is not None else 1
        return max(0, self.subtasks - self.parts * redundancy)


def format_summary(result: RunResult) -> str:
    """A few lines for the user: counts, failures, wall time, where the outputs are."""
    retries = result.retries
    lines = [
        f"task {result.task_id} finished in {result.wall_time:.1f} s",
        f"  parts verified: {result.parts}",
        f"  subtasks:       {result.subtasks} ({retries} {'retry' if retries == 1 else 'retries'})",
        f"  failures:       {len(result.failures)}",
    ]
    for failure in result.failures[:10]:
        lines.append(f"    - {failure.subtask_id[:8]} on {failure.node_id}: {failure.reason}")
    if len(result.failures) > 10:
        lines.append(f"    ... and {len(result.failures) - 10} more")
    if result.resumed:
        lines.append("  resumed:        an earlier run's unfinished task, continued")
    if result.requestor_restarts:
        lines.append(f"  requestor restarts: {result.requestor_restarts} (it died; restarted)")
    status = result.status
    if status is not None:
        if status.redundancy > 1:
            lines.append(f"  redundancy:     {status.redundancy} (results vote)")
        # Not a second retries figure: the app's budget of failed verifications.
        lines.append(
            f"  failed verifications: {status.failures} (the app allows {status.max_retries}: "
            "max_retries)"
        )
        lines.append(f"  nodes:          {len(status.nodes)}")
        for node, info in list(status.nodes.items())[:10]:
            states = ", ".join(
                f"{n} {_STATE_NAMES.get(state, state)}"
                for state, n in sorted(info.subtasks.items())
            )
            lines.append(f"    - {node}: {states or 'no subtasks'}")
        if len(status.nodes) > 10:
            lines.append(f"    ... and {len(status.nodes) - 10} more")
        for node, reason in status.bans.items():
            lines.append(f"  banned:         {node}: {reason}")
    outputs = f"  outputs:        {result.outputs_dir}"
    if result.work_dir is not None and result.outputs_dir.is_relative_to(result.work_dir):
        outputs += " (in the work dir; --out DIR copies them out)"
    lines.append(outputs)
    lines.extend(f"    {path}" for path in result.output_files)
    if result.work_dir is not None:
        kept = " (a temporary folder, left behind: delete it when done)" if result.temporary else ""
        lines.append(f"  work dir:       {result.work_dir}{kept}")
    return "\n".join(lines)


#: How the requestor's subtask states read in a finished run's summary.
_STATE_NAMES = {"aborted": "aborted (the compute failed)"}
