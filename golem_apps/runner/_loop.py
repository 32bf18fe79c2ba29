"""The scheduling loop: keep N providers busy, verify one result at a time, as a node does."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from .._client import ProgressReport, RequestorClient, SubtaskAssignment
from .._contexts import VerifyResult
from .._exceptions import ComputeFailed, TaskFailed
from ._journal import Journal
from ._machines import Machine, Machines, SubtaskJob
from ._progress import Reporter, Stats
from ._status import StatusFeed
from ._summary import Failure
from ._workdir import LOGS_DIR

log = logging.getLogger("golem_apps.runner")
T = TypeVar("T")

#: How often the loop looks again when nothing told it to (an empty NextSubtask reply).
POLL_INTERVAL = 0.05
#: How often it looks again while subtasks run (each one wakes it when it ends).
BUSY_POLL_INTERVAL = 1.0
#: Polls in a row with nothing running and nothing handed out before the task counts as stuck.
MAX_IDLE_POLLS = 200


def _message(exc: BaseException) -> str:
    if isinstance(exc, GRPCError):
        return f"{exc.status.name}: {exc.message}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _refused_as_settled(exc: BaseException) -> bool:
    # The requestor's answer to an AbortSubtask of a subtask that has its verdict.
    return isinstance(exc, GRPCError) and exc.status is Status.FAILED_PRECONDITION


@dataclass
class _Subtask:
    subtask_id: str
    node_id: str
    key: str  # identifies the part across attempts: its params and resources
    params: dict[str, Any] = field(default_factory=dict)
    verified: bool = False
    computed: bool = False  # the provider returned a result (whatever its verdict)


class Scheduler:
    """Drives one created task to its end over a :class:`RequestorClient`.

    ``run`` returns when nothing is pending, nothing is computing and no
    result awaits verification; it raises TaskFailed when the task cannot get there.
    """

    def __init__(
        self,
        client: RequestorClient,
        machines: Machines,
        *,
        task_id: str,
        task_dir: Path,
        work_dir: Path,
        subtask_timeout: float | None,
        max_attempts: int,
        reporter: Reporter,
        stats: Stats,
        heartbeat_timeout: float | None = None,
        journal: Journal,
        status: StatusFeed,
    ) -> None:
        self._client = client
        self._journal = journal
        self._status = status
        self._machines = machines
        self._task_id = task_id
        self._task_dir = task_dir
        self._work_dir = work_dir
        self._timeout = subtask_timeout
        self._max_attempts = max_attempts
        self._reporter = reporter
        self.stats = stats
        self.failures: list[Failure] = []
        self._failed_attempts: dict[str, int] = {}
        self._awaiting: list[_Subtask] = []
        self._verify_lock = anyio.Lock()  # the node sends Verify calls one at a time
        self._wake = anyio.Event()
        # Subtasks computing or verifying; counted here, since a machine that
        # left (a cluster's worker) is no longer among the machines.
        self._busy = 0
        self._fatal: str | None = None
        self._bans_seen: set[str] = set()
        self._heartbeat_timeout = heartbeat_timeout
        #: The last progress report of each provider computing now, by node id.
        self.progress: dict[str, ProgressReport] = {}

    def _notify(self) -> None:
        self._wake.set()

    async def _note(self, step: Callable[..., None], *args: Any) -> None:
        # A journal step (a line appended to a file): off the event loop.
        await anyio.to_thread.run_sync(step, *args)

    async def run(self, *, resume: bool = False) -> None:
        """Hand out, compute, ship and verify until the task is done.

        With ``resume``, first settle what an earlier run left unsettled (see
        :mod:`._journal`): abort the subtasks it had out, verify the results it shipped.
        """
        async with anyio.create_task_group() as tg:
            try:
                tg.start_soon(self._status.follow)  # the bar's total and ETA
                if resume:
                    await self._recover()
                await self._schedule(tg)
            except TaskFailed as exc:
                if self._fatal is None:
                    self._fatal = str(exc)
            tg.cancel_scope.cancel()  # stops (and kills) whatever still runs after a failure
        if self._fatal is not None:
            raise TaskFailed(self._fatal)

    async def _recover(self) -> None:
        left, verified = await anyio.to_thread.run_sync(self._journal.replay)
        self.stats.parts += verified
        for entry in left:
            subtask = _Subtask(entry.subtask_id, entry.node_id, entry.subtask_id)
            if entry.shipped:
                subtask.computed = True
                await self._verify(subtask)
                continue
            try:
                await self._client.abort_subtask(self._task_id, entry.subtask_id)
            except GRPCError as exc:  # never handed out (NOT_FOUND), or settled meanwhile
                log.debug("AbortSubtask of %s: %s", entry.subtask_id, _message(exc))
            except Exception as exc:
                raise TaskFailed(f"AbortSubtask failed: {_message(exc)}") from None
            await self._note(self._journal.settled, entry.subtask_id, False)

    async def _requestor_call(self, what: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except Exception as exc:
            raise TaskFailed(f"{what} failed: {_message(exc)}") from None

    async def _schedule(self, tg: anyio.abc.TaskGroup) -> None:
        idle_polls = 0
        while True:
            self._wake = anyio.Event()
            if self._fatal is not None:
                raise TaskFailed(self._fatal)
            handed_out = await self._fill_slots(tg)
            machines = self._machines.current()
            if not self._busy:
                pending = await self._requestor_call(
                    "HasPendingSubtasks", self._client.has_pending_subtasks(self._task_id)
                )
                if not pending and not handed_out:
                    if self._awaiting:
                        await self._retry_awaiting()
                        if self._awaiting:
                            ids = ", ".join(s.subtask_id[:8] for s in self._awaiting)
                            raise TaskFailed(
                                f"subtasks {ids} still await data, and nothing is left to compute"
                            )
                        continue
                    return
                # With no machine at all, nobody was asked: the backend waits for one.
                idle_polls = 0 if handed_out or not machines else idle_polls + 1
                if idle_polls > MAX_IDLE_POLLS:
                    raise TaskFailed(
                        "the requestor reports pending subtasks but hands none out "
                        f"(every NextSubtask reply is empty; {len(machines)} machines)"
                    )
            # A finishing subtask wakes the loop; with none running, only time changes things.
            with anyio.move_on_after(BUSY_POLL_INTERVAL if self._busy else POLL_INTERVAL):
                await self._wake.wait()

    async def _fill_slots(self, tg: anyio.abc.TaskGroup) -> bool:
        handed_out = False
        for slot in list(self._machines.current()):
            if self._fatal is not None:
                break
            if slot.busy or slot.node_id in self._bans_seen:
                continue  # a banned machine that stays (a cluster's worker) gets no more work
            pending = await self._requestor_call(
                "HasPendingSubtasks", self._client.has_pending_subtasks(self._task_id)
            )
            if not pending:
                break
            subtask_id = str(uuid.uuid4())
            await self._note(self._journal.asked, subtask_id, slot.node_id)
            assignment = await self._requestor_call(
                "NextSubtask",
                self._client.next_subtask(self._task_id, subtask_id, slot.node_id),
            )
            if assignment is None:
                # Work is pending but not for this node: it may hold a subtask that
                # awaits data, have computed a copy of every ready part (redundancy)
                # or be banned. Another machine takes the slot and asks once more.
                banned = await self._banned(slot.node_id)
                old_id = slot.node_id
                if not self._machines.replace(slot):
                    await self._note(self._journal.settled, subtask_id, False)
                    continue  # the same machine stays: it waits for work
                if banned:
                    self._reporter.node_event("replaced", old_id, "banned by the requestor")
                await self._note(self._journal.asked, subtask_id, slot.node_id)
                assignment = await self._requestor_call(
                    "NextSubtask",
                    self._client.next_subtask(self._task_id, subtask_id, slot.node_id),
                )
            if assignment is None:
                await self._note(self._journal.settled, subtask_id, False)
                continue  # no subtask for this node now
            slot.busy = True
            self._busy += 1
            handed_out = True
            self.stats.subtasks += 1
            self.stats.running += 1
            self._reporter.event("started", subtask_id, f"on {slot.node_id}")
            log.debug(
                "subtask %s on %s: params %s, resources %s",
                subtask_id, slot.node_id, json.dumps(assignment.params), assignment.resources,
            )  # fmt: skip
            tg.start_soon(self._run_subtask, slot, subtask_id, assignment)
        return handed_out

    async def _run_subtask(
        self, slot: Machine, subtask_id: str, assignment: SubtaskAssignment
    ) -> None:
        key = json.dumps([assignment.params, assignment.resources], sort_keys=True)
        subtask = _Subtask(subtask_id, slot.node_id, key, assignment.params)
        computing = True
        try:
            reason = await self._compute(subtask, assignment)
            computing = False
            self.stats.running -= 1
            if reason is not None:
                # The verdict on the attempts first: once they are spent the task
                # fails here, before an AbortSubtask could free the part for a
                # hand-out to another machine.
                self._failed(subtask, reason)
                await self._abort_subtask(subtask_id)
            else:
                subtask.computed = True
                await self._verify(subtask)
        except TaskFailed as exc:
            if self._fatal is None:  # the first failure is the task's (others follow from it)
                self._fatal = str(exc)
        finally:
            if computing:
                self.stats.running -= 1
            if not subtask.computed:
                # Another machine takes the slot (if the backend has one): the
                # provider crashed or timed out. A node keeps its id through
                # verdicts, so that the requestor can count its failures (and ban it).
                self._machines.replace(slot)
            slot.busy = False
            self._busy -= 1
            self._notify()

    async def _compute(self, subtask: _Subtask, assignment: SubtaskAssignment) -> str | None:
        """Ship inputs, compute, ship the result. None on success, else why it failed."""
        subtask_id = subtask.subtask_id
        try:
            with anyio.fail_after(self._timeout) if self._timeout else nullcontext():
                node_id = subtask.node_id

                def on_progress(report: ProgressReport) -> None:
                    self.progress[node_id] = report
                    self._reporter.progress(node_id, subtask_id, report.fraction, report.message)

                job = SubtaskJob(
                    self._task_id,
                    subtask_id,
                    node_id,
                    assignment.params,
                    tuple(assignment.resources),
                    self._task_dir,
                    self._work_dir / LOGS_DIR / f"{subtask_id}.log",
                    on_progress=on_progress,
                    heartbeat_timeout=self._heartbeat_timeout,
                )
                try:
                    await self._machines.run(job)
                finally:
                    self.progress.pop(node_id, None)
            await self._note(self._journal.shipped, subtask_id)
        except TimeoutError:
            return f"timed out after {self._timeout:g} s; provider killed"
        except (ComputeFailed, OSError) as exc:
            if str(exc).startswith("no heartbeat"):
                self._reporter.node_event("stalled", subtask.node_id, f"{exc}; provider replaced")
            return str(exc)
        return None

    async def _banned(self, node_id: str) -> bool:
        # The requestor's status service names banned nodes (a ban is recorded
        # before the Verify that caused it answers); without it no ban is known.
        reason = await self._status.ban(node_id)
        if reason is None:
            return False
        if node_id not in self._bans_seen:
            self._bans_seen.add(node_id)
            self._reporter.node_event("banned", node_id, reason)
            log.warning("node %s banned by the requestor: %s", node_id, reason)
        return True

    async def _abort_subtask(self, subtask_id: str, *, if_settled: str | None = None) -> None:
        """AbortSubtask; TaskFailed if refused (with ``if_settled`` when it has a verdict)."""
        try:
            await self._client.abort_subtask(self._task_id, subtask_id)
        except Exception as exc:
            if if_settled is not None and _refused_as_settled(exc):
                raise TaskFailed(if_settled) from None
            raise TaskFailed(f"AbortSubtask of {subtask_id} failed: {_message(exc)}") from None
        await self._note(self._journal.settled, subtask_id, False)

    def _failed(self, subtask: _Subtask, reason: str) -> None:
        self.failures.append(Failure(subtask.subtask_id, subtask.node_id, reason))
        self.stats.failures += 1
        self._reporter.event("failed", subtask.subtask_id, reason)
        attempts = self._failed_attempts.get(subtask.key, 0) + 1
        self._failed_attempts[subtask.key] = attempts
        if attempts >= self._max_attempts:
            shown = json.dumps(subtask.params)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            times = "once" if attempts == 1 else f"{attempts} times"
            raise TaskFailed(f"a part (params {shown}) failed {times}; last failure: {reason}")

    async def _verify(self, subtask: _Subtask) -> None:
        async with self._verify_lock:
            result = await self._verify_one(subtask)
            if result in (VerifyResult.SUCCESS, VerifyResult.FAILURE):
                # A verdict may settle others (a redundant part's vote): ask again.
                await self._retry_awaiting_locked()

    async def _verify_one(self, subtask: _Subtask) -> VerifyResult | None:
        """Verify one result and act on the verdict; None when Verify itself failed."""
        try:
            verdict = await self._client.verify(self._task_id, subtask.subtask_id)
        except GRPCError as exc:
            # The verify hook raised: the result cannot be trusted; the part goes back.
            # A subtask with its verdict already refuses the abort: what raised came
            # after the verdict (the merge), which no other copy mends.
            failure = f"Verify failed: {exc.message}"
            await self._abort_subtask(subtask.subtask_id, if_settled=failure)
            self._failed(subtask, failure)
            return None
        except Exception as exc:
            raise TaskFailed(f"Verify failed: {_message(exc)}") from None
        if verdict.result is not VerifyResult.AWAITING_DATA:
            success = verdict.result is VerifyResult.SUCCESS
            await self._note(self._journal.settled, subtask.subtask_id, success)
        if verdict.result is VerifyResult.SUCCESS:
            subtask.verified = True
            self.stats.parts += 1
            self._reporter.event("verified", subtask.subtask_id)
        elif verdict.result is VerifyResult.AWAITING_DATA:
            if subtask not in self._awaiting:
                self._awaiting.append(subtask)
            self._reporter.event("awaiting", subtask.subtask_id, verdict.reason)
        else:
            self._failed(subtask, f"verification {verdict.result.name}: {verdict.reason}")
        return verdict.result

    async def _retry_awaiting(self) -> None:
        async with self._verify_lock:
            await self._retry_awaiting_locked()

    async def _retry_awaiting_locked(self) -> None:
        # Re-verify subtasks that awaited data, as long as each round verifies one more.
        progress = True
        while progress and self._awaiting:
            progress = False
            for subtask in list(self._awaiting):
                self._awaiting.remove(subtask)
                result = await self._verify_one(subtask)
                if result is VerifyResult.SUCCESS:
                    progress = True
