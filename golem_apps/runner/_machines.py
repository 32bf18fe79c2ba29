"""The machines providers run on: the scheduler's seam between "which nodes exist" and the loop.

A backend decides which machines exist and their opaque node ids, and runs
one subtask on one of them: resources there, a one-shot provider, the result
back into the requestor's ``subtask_outputs/<subtask_id>/``. The local runner's
backend is :class:`LocalMachines`; a Dask cluster's is in ``_dask.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio

from .._client import ProgressReport
from ._nodes import ComputeJob, Nodes
from ._workdir import LOGS_DIR, prepare_provider, ship_resources, ship_result


def new_node_id(slot: int) -> str:
    """A fresh opaque node id for a provider slot."""
    return f"provider{slot}-{uuid.uuid4().hex[:8]}"


@dataclass
class Machine:
    """One machine: the node id the requestor knows it by, and whether it computes now."""

    index: int
    """Its number, from 1: the local runner's slot, a cluster worker's order of arrival."""
    node_id: str
    busy: bool = False


@dataclass(frozen=True)
class SubtaskJob:
    """One handed-out subtask for one machine, and where the requestor's files are."""

    task_id: str
    subtask_id: str
    node_id: str
    params: dict[str, Any]
    resources: tuple[str, ...]
    """Names of files in the requestor's ``subtask_inputs`` that the provider needs."""
    requestor_task_dir: Path
    log_path: Path
    """Where the provider's output (stderr, prints) ends up on the runner's side."""
    on_progress: Callable[[ProgressReport], None] | None = None
    heartbeat_timeout: float | None = None


class Machines(Protocol):
    """Which machines exist (and their node ids), and how a subtask runs on one."""

    def current(self) -> Sequence[Machine]:
        """The machines that exist now, in the order they take work."""

    def replace(self, machine: Machine) -> bool:
        """``machine`` failed a subtask or got none: True if a fresh one took its place.

        The local runner puts a new machine (a new node id) in the slot; a
        cluster's worker is the same machine whatever happened, and keeps its id.
        """

    async def run(self, job: SubtaskJob) -> Path:
        """Compute ``job`` on the machine named by its node id; the result's path on this side.

        The result is in the requestor's ``subtask_outputs/<subtask_id>/`` on return.
        Raises ComputeFailed (or OSError) when the subtask could not be computed.
        """


class LocalMachines:
    """``providers`` slots on this machine; the provider of each subtask runs through ``nodes``.

    A slot whose provider crashed, timed out or got no subtask is taken by a new
    machine with a new node id, as if the node had found another provider.
    """

    def __init__(self, nodes: Nodes, providers: int, work_dir: Path) -> None:
        self._nodes = nodes
        self._work_dir = work_dir
        self._machines = [Machine(i + 1, new_node_id(i + 1)) for i in range(providers)]

    def current(self) -> Sequence[Machine]:
        """The provider slots."""
        return self._machines

    @asynccontextmanager
    async def started(self, task_id: str) -> AsyncIterator[Machines]:
        """These machines while the block runs, each slot's first provider started at once
        (see :meth:`Nodes.warm`: golem_apps' own providers only), before any subtask."""

        def lay_out() -> list[tuple[Path, Path]]:
            logs = self._work_dir / LOGS_DIR
            return [
                (prepare_provider(self._work_dir, m.node_id, task_id), logs / f"{m.node_id}.log")
                for m in self._machines
            ]

        async with self._nodes.warm(await anyio.to_thread.run_sync(lay_out)):
            yield self

    def replace(self, machine: Machine) -> bool:
        """A new node id for the slot."""
        machine.node_id = new_node_id(machine.index)
        return True

    def _prepare(self, job: SubtaskJob) -> Path:
        # One worker-thread trip for both: a subtask waits for them before its provider starts.
        task_dir = prepare_provider(self._work_dir, job.node_id, job.task_id)
        ship_resources(job.requestor_task_dir, task_dir, job.resources)
        return task_dir

    async def run(self, job: SubtaskJob) -> Path:
        """Lay out the provider's dir in the work dir, copy resources in, compute, move back."""
        task_dir = await anyio.to_thread.run_sync(self._prepare, job)
        output = await self._nodes.compute(
            ComputeJob(
                job.task_id,
                job.subtask_id,
                job.params,
                task_dir,
                job.log_path,
                on_progress=job.on_progress,
                heartbeat_timeout=job.heartbeat_timeout,
            )
        )
        return await anyio.to_thread.run_sync(
            ship_result, task_dir, output, job.requestor_task_dir, job.subtask_id
        )
