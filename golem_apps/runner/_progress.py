"""Showing a run's progress: a rich progress bar on a terminal, plain log lines otherwise.

rich is the optional ``runner`` extra and is imported here only, when a
terminal wants it: neither the servers nor a provider's start-up pay for it.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .._taskstatus import TaskStatus

#: Seconds between two progress lines of one subtask in plain output.
PROGRESS_EVERY = 1.0


@dataclass
class Stats:
    """What the runner has seen so far; reporters read it."""

    parts: int = 0
    """Parts verified (SUCCESS)."""
    subtasks: int = 0
    """Subtasks handed out."""
    running: int = 0
    """Providers computing right now."""
    failures: int = 0
    """Subtasks that failed (compute, timeout, crash or verification)."""
    started: float = field(default_factory=time.monotonic)
    resumed: bool = False
    """The task is an earlier run's, continued (see :func:`golem_apps.runner.run_task`)."""
    status: TaskStatus | None = None
    """The requestor's latest status of the task, when it serves golem_apps' status service."""

    @property
    def total(self) -> int | None:
        """Parts in the task, when the requestor says (its status service); else None."""
        return None if self.status is None else self.status.parts.get("total")

    @property
    def verified(self) -> int:
        """Parts verified: the requestor's count when it says, else the runner's own."""
        return self.parts if self.status is None else self.status.parts.get("done", 0)

    def counts(self) -> str:
        """``N`` or ``N/M`` parts verified."""
        total = self.total
        return f"{self.verified}" if total is None else f"{self.verified}/{total}"

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started


def _begun(stats: Stats) -> str:
    return "resumed from an earlier run" if stats.resumed else "created"


class Reporter:
    """Receives the events of a run. This base class ignores them: a silent run."""

    def start(self, stats: Stats, task_id: str, work_dir: str) -> None:
        """The task was created; ``stats`` stays live for the rest of the run."""

    def event(self, kind: str, subtask_id: str, detail: str = "") -> None:
        """A subtask ``started``, was ``verified``, is ``awaiting`` data, or ``failed``."""

    def node_event(self, kind: str, node_id: str, detail: str = "") -> None:
        """A provider node was ``banned`` by the requestor, or ``stalled`` (no heartbeat)."""

    def progress(self, node_id: str, subtask_id: str, fraction: float, message: str) -> None:
        """A running provider reported its progress (``ctx.progress``); fraction in [0, 1]."""

    def status(self, status: TaskStatus) -> None:
        """The requestor's status of the task (about once a second; golem_apps requestors only)."""

    def stop(self) -> None:
        """The run is over (finished, failed or interrupted)."""


class PlainReporter(Reporter):
    """One log line per event, for logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._stats = Stats()
        self._printed: dict[str, float] = {}  # subtask id -> when its progress was printed

    def _line(self, text: str) -> None:
        try:
            print(f"[{self._stats.elapsed:7.2f}s] {text}", file=self._stream, flush=True)
        except BrokenPipeError:  # the reader went away (`| head`): the run goes on, quietly
            self._stream = Path(os.devnull).open("w")  # noqa: SIM115 - lives with the reporter

    def start(self, stats: Stats, task_id: str, work_dir: str) -> None:
        """Print the task id and where its files are."""
        self._stats = stats
        self._line(f"task {task_id} {_begun(stats)} (work dir {work_dir})")

    def event(self, kind: str, subtask_id: str, detail: str = "") -> None:
        """Print the event with the running counts."""
        s = self._stats
        counts = f"{s.counts()} verified, {s.running} running, {s.failures} failed"
        text = f"subtask {subtask_id[:8]} {kind}" + (f": {detail}" if detail else "")
        self._line(f"{text} ({counts})")

    def node_event(self, kind: str, node_id: str, detail: str = "") -> None:
        """Print the node's event."""
        self._line(f"node {node_id} {kind}" + (f": {detail}" if detail else ""))

    def progress(self, node_id: str, subtask_id: str, fraction: float, message: str) -> None:
        """Print the provider's progress: at most a line a second per subtask, and 100%."""
        now = time.monotonic()
        if fraction < 1.0 and now - self._printed.get(subtask_id, -PROGRESS_EVERY) < PROGRESS_EVERY:
            return
        self._printed[subtask_id] = now
        text = f"subtask {subtask_id[:8]} on {node_id}: {fraction:.0%}"
        self._line(text + (f" {message}" if message else ""))


class RichReporter(Reporter):
    """A live bar of verified parts and running providers; failures printed above it."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._console = Console(file=stream)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),  # an ETA, once the requestor tells the total
            console=self._console,
        )
        self._bar: Any = None
        self._stats = Stats()
        self._providers: dict[str, Any] = {}  # subtask id -> its provider's bar

    def _counts(self) -> str:
        s = self._stats
        return (
            f"{s.counts()} parts verified · {s.running} providers running · "
            f"{s.subtasks} subtasks · {s.failures} failed"
        )

    def start(self, stats: Stats, task_id: str, work_dir: str) -> None:
        """Show the bar: pulsing until the requestor's status tells the total (golem_apps apps)."""
        self._stats = stats
        self._console.print(f"task {task_id} {_begun(stats)} (work dir {work_dir})")
        self._progress.start()
        self._bar = self._progress.add_task("running", total=None, counts=self._counts())

    def event(self, kind: str, subtask_id: str, detail: str = "") -> None:
        """Update the bar; print failures."""
        if kind in ("verified", "failed", "awaiting") and subtask_id in self._providers:
            self._progress.remove_task(self._providers.pop(subtask_id))
        if kind == "failed":
            self._progress.console.print(
                f"[red]subtask {subtask_id[:8]} failed[/red]: {detail}", markup=True
            )
        self._update()

    def _update(self) -> None:
        if self._bar is not None:
            s = self._stats
            self._progress.update(
                self._bar, total=s.total, completed=s.verified, counts=self._counts()
            )

    def status(self, status: TaskStatus) -> None:
        """The total is known: N/M and an ETA."""
        self._update()

    def node_event(self, kind: str, node_id: str, detail: str = "") -> None:
        """Print the node's event above the bars."""
        self._progress.console.print(
            f"[yellow]node {node_id} {kind}[/yellow]" + (f": {detail}" if detail else ""),
            markup=True,
        )

    def progress(self, node_id: str, subtask_id: str, fraction: float, message: str) -> None:
        """One bar per running provider, removed when its subtask ends."""
        bar = self._providers.get(subtask_id)
        if bar is None:
            bar = self._progress.add_task(node_id, total=1.0, counts="")
            self._providers[subtask_id] = bar
        self._progress.update(bar, completed=fraction, counts=message)

    def stop(self) -> None:
        """Fill the bar and stop it."""
        if self._bar is not None:
            done = self._stats.verified
            self._progress.update(self._bar, total=done, completed=done, counts=self._counts())
            self._progress.stop()
            self._bar = None


def auto_reporter(stream: TextIO | None = None) -> Reporter:
    """RichReporter on a terminal when rich is installed, PlainReporter otherwise."""
    stream = stream or sys.stdout
    if stream.isatty():
        try:
            import rich  # noqa: F401
        except ImportError:
            pass
        else:
            return RichReporter(stream)
    return PlainReporter(stream)
