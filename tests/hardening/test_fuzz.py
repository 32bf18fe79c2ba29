"""Hypothesis fuzzing of every RequestorApp RPC against one live requestor.

Over 1,000 generated requests, hostile and well-formed mixed: each is answered
with an allowed status, the server stays healthy, and the task state stays
consistent with what the answers said (a model checks the invariants).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from golem_apps.constants import SUBTASK_OUTPUTS_DIR, TASK_OUTPUTS_DIR
from golem_apps.proto import golem_task_api as api

from . import apps
from .helpers import Live, live_requestor

pytestmark = pytest.mark.slow

T = TypeVar("T")

ALLOWED = {
    Status.OK,
    Status.INVALID_ARGUMENT,
    Status.NOT_FOUND,
    Status.ALREADY_EXISTS,
    Status.FAILED_PRECONDITION,
}
HOSTILE = ["", ".", "..", "a/b", "../x", "/etc", "a\\b", "x\x00y", "x" * 256, "ü" * 200]
MIN_REQUESTS = 1000


def is_safe(name: str) -> bool:
    """The id rules, written independently of golem_apps._validate."""
    return (
        name not in ("", ".", "..")
        and not any(c in name for c in "/\\\x00")
        and len(name.encode("utf-8", "surrogatepass")) <= 255
    )


class LoopThread:
    """An event loop in a thread, hosting the server and the client for the whole test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class TaskModel:
    parts: int
    aborted: bool = False
    failures: int = 0
    #: subtask id -> computing | success | failure | aborted | discarded
    subtasks: dict[str, str] = field(default_factory=dict)
    results: set[str] = field(default_factory=set)  # subtasks with a non-empty result file
    #: subtask id -> (node id, params JSON) of its hand-out
    handed: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: subtask id -> the verdict Verify answered
    verdicts: dict[str, int] = field(default_factory=dict)

    def holding(self) -> int:
        """Parts held by subtasks: computing or verified."""
        return sum(state in ("computing", "success") for state in self.subtasks.values())


@dataclass
class World:
    loop: LoopThread
    live: Live
    work: Path
    requests: int = 0
    counter: int = 0
    #: The model of every task: the server's state outlives each example.
    tasks: dict[str, TaskModel] = field(default_factory=dict)
    statuses: dict[str, set[Status]] = field(default_factory=dict)

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def call(self, rpc: str, awaitable: Awaitable[T]) -> tuple[Status, T | None]:
        async def go() -> T:
            return await awaitable

        self.requests += 1
        try:
            reply = self.loop.run(go())
        except GRPCError as error:
            assert error.status in ALLOWED, f"{rpc}: {error.status.name}: {error.message}"
            assert "Traceback" not in (error.message or "")
            self.statuses.setdefault(rpc, set()).add(error.status)
            return error.status, None
        self.statuses.setdefault(rpc, set()).add(Status.OK)
        return Status.OK, reply


WORLD: World | None = None


class RequestorFuzz(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        assert WORLD is not None
        self.w = WORLD
        self.stub = WORLD.live.stub
        self.tasks = WORLD.tasks

    # -- generated values -----------------------------------------------------

    # Draws never depend on the server's state (hypothesis requires it): an index is
    # drawn, then taken modulo the ids known at that moment.

    def pick_id(self, data: st.DataObject, known: list[str], prefix: str, label: str) -> str:
        kind = data.draw(st.integers(0, 7), label=f"{label} kind")
        index = data.draw(st.integers(0, 1 << 16), label=f"{label} index")
        if kind <= 3 and known:
            return known[index % len(known)]
        if kind == 5:
            return HOSTILE[index % len(HOSTILE)]
        if kind == 6:
            return data.draw(st.text(max_size=12), label=label)
        return self.w.fresh(prefix)

    def task_id(self, data: st.DataObject) -> str:
        return self.pick_id(data, sorted(self.tasks), "t", "task_id")

    def subtask_id(self, data: st.DataObject, task_id: str) -> str:
        model = self.tasks.get(task_id)
        known = sorted(model.subtasks) if model else []
        return self.pick_id(data, known, "s", "subtask_id")

    def expect_id_errors(self, status: Status, *ids: str, task_id: str | None) -> bool:
        """Check the answers every RPC owes bad or unknown ids; True if the call was such."""
        if not all(is_safe(i) for i in ids):
            assert status is Status.INVALID_ARGUMENT, (ids, status)
            return True
        if task_id is not None and task_id not in self.tasks:
            assert status is Status.NOT_FOUND, (task_id, status)
            return True
        return False

    @initialize(n=st.integers(1, 4))
    def create_a_good_task(self, n: int) -> None:
        """Every example starts with one well-formed task of its own.

        So that the happy paths get exercised whatever the draws: Hypothesis
        biases them with constants from the project's modules loaded at that
        moment, which vary with the tests run before (alone, this test
        created 54 tasks; after tests/engine, tests/beyond and tests/server,
        2, and never verified a result).
        """
        task_id = self.w.fresh("t")
        status, _ = self.w.call(
            "CreateTask",
            self.stub.create_task(
                api.CreateTaskRequest(task_id=task_id, task_params_json=json.dumps({"n": n}))
            ),
        )
        assert status is Status.OK, status
        self.tasks[task_id] = TaskModel(parts=n)

    # -- one rule per RPC ---------------------------------------------------

    @rule(data=st.data())
    def create_task(self, data: st.DataObject) -> None:
        task_id = self.task_id(data)
        params = data.draw(
            st.one_of(
                # Well-formed tasks, weighted up so that the happy paths get exercised.
                *[st.builds(lambda n: json.dumps({"n": n}), st.integers(1, 4))] * 3,
                st.builds(lambda n: json.dumps({"n": n}), st.integers(-5, 20_000)),
                st.text(max_size=30),
                st.recursive(
                    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c),
                    max_leaves=6,
                ).map(json.dumps),
            ),
            label="params",
        )
        max_subtasks = data.draw(st.one_of(st.just(0), st.integers(-3, 10)), label="max_subtasks")
        status, _ = self.w.call(
            "CreateTask",
            self.stub.create_task(
                api.CreateTaskRequest(
                    task_id=task_id, task_params_json=params, max_subtasks_count=max_subtasks
                )
            ),
        )
        if not is_safe(task_id):
            assert status is Status.INVALID_ARGUMENT
            return
        if task_id in self.tasks:
            assert status is not Status.OK, "a task id was created twice"
            return
        try:
            parsed = json.loads(params) if params else {}  # empty text: an empty object
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or max_subtasks < 0:
            assert status is Status.INVALID_ARGUMENT, (params, max_subtasks, status)
            return
        n = parsed.get("n", 2)
        valid_n = isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 10_000
        if not valid_n:
            assert status is Status.INVALID_ARGUMENT, (params, status)
            return
        if n == 0:  # a task without parts is refused
            assert status is Status.INVALID_ARGUMENT, (params, status)
            return
        if max_subtasks and n > max_subtasks:
            assert status is Status.INVALID_ARGUMENT, (params, max_subtasks, status)
            return
        assert status is Status.OK, (params, max_subtasks, status)
        self.tasks[task_id] = TaskModel(parts=n)

    @rule(data=st.data())
    def next_subtask(self, data: st.DataObject) -> None:
        task_id = self.task_id(data)
        subtask_id = self.subtask_id(data, task_id)
        node = data.draw(st.text(max_size=8), label="node")
        status, reply = self.w.call(
            "NextSubtask",
            self.stub.next_subtask(
                api.NextSubtaskRequest(task_id=task_id, subtask_id=subtask_id, opaque_node_id=node)
            ),
        )
        if self.expect_id_errors(status, task_id, subtask_id, task_id=task_id):
            return
        model = self.tasks[task_id]
        known = model.handed.get(subtask_id)
        if known is not None and not model.aborted:
            # The same node's call again is a retry (the same answer, unless the subtask
            # was aborted or discarded); another node's is refused.
            again = known[0] == node and model.subtasks[subtask_id] not in (
                "aborted",
                "discarded",
            )
            if again:
                assert status is Status.OK and reply is not None and reply.is_set("subtask")
                assert reply.subtask.subtask_params_json == known[1], "a retry answered anew"
            else:
                assert status is Status.ALREADY_EXISTS, (subtask_id, status)
            return
        if reply is None or not reply.is_set("subtask"):
            return
        assert not model.aborted, "an aborted task handed out a subtask"
        assert subtask_id not in model.subtasks, "a subtask id was handed out twice"
        model.subtasks[subtask_id] = "computing"
        model.handed[subtask_id] = (node, reply.subtask.subtask_params_json)
        assert model.holding() <= model.parts, "more parts handed out than the task has"
        assert json.loads(reply.subtask.subtask_params_json)["index"] in range(model.parts)

    @rule(data=st.data(), size=st.sampled_from([0, 1, 10]))
    def put_result(self, data: st.DataObject, size: int) -> None:
        """Not an RPC: the node puts a provider's result in subtask_outputs."""
        first, second = data.draw(st.tuples(st.integers(0, 1 << 16), st.integers(0, 1 << 16)))
        if not self.tasks:
            return
        task_id = sorted(self.tasks)[first % len(self.tasks)]
        model = self.tasks[task_id]
        if not model.subtasks:
            return
        subtask_id = sorted(model.subtasks)[second % len(model.subtasks)]
        folder = self.w.work / task_id / SUBTASK_OUTPUTS_DIR / subtask_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{subtask_id}.out").write_bytes(b"x" * size)
        if size:
            model.results.add(subtask_id)
        else:
            model.results.discard(subtask_id)

    @rule(data=st.data())
    def verify(self, data: st.DataObject) -> None:
        task_id = self.task_id(data)
        subtask_id = self.subtask_id(data, task_id)
        status, reply = self.w.call(
            "Verify",
            self.stub.verify(api.VerifyRequest(task_id=task_id, subtask_id=subtask_id)),
        )
        if self.expect_id_errors(status, task_id, subtask_id, task_id=task_id):
            return
        model = self.tasks[task_id]
        state = model.subtasks.get(subtask_id)
        if state in ("success", "failure") and not model.aborted:
            # A retry: the verdict answered before.
            assert status is Status.OK and reply is not None, (state, status)
            assert reply.result == model.verdicts[subtask_id], "a retried Verify answered anew"
            return
        if state != "computing" or model.aborted:
            assert status is not Status.OK, f"Verify of a {state} subtask answered OK"
            return
        assert status is Status.OK and reply is not None
        model.verdicts[subtask_id] = reply.result
        if reply.result == api.VerifyReplyVerifyResult.SUCCESS:
            assert subtask_id in model.results, "an empty or missing result was accepted"
            model.subtasks[subtask_id] = "success"
        else:
            assert reply.reason
            model.subtasks[subtask_id] = "failure"
            model.failures += 1

    @rule(data=st.data())
    def discard_subtasks(self, data: st.DataObject) -> None:
        task_id = self.task_id(data)
        count = data.draw(st.integers(0, 4), label="count")
        ids = [self.subtask_id(data, task_id) for _ in range(count)]
        status, reply = self.w.call(
            "DiscardSubtasks",
            self.stub.discard_subtasks(
                api.DiscardSubtasksRequest(task_id=task_id, subtask_ids=ids)
            ),
        )
        if self.expect_id_errors(status, task_id, *ids, task_id=task_id):
            return
        model = self.tasks[task_id]
        if status is Status.NOT_FOUND:
            assert any(i not in model.subtasks for i in ids), "NOT_FOUND for known subtasks"
            return
        if status is not Status.OK:
            assert model.aborted, status
            return
        assert reply is not None
        for subtask_id in reply.discarded_subtask_ids:
            assert subtask_id in ids, "discarded an id that was not asked for"
            # A verified result, or a computation the node restarts: both give the part back.
            assert model.subtasks.get(subtask_id) in ("success", "computing"), (
                f"discarded a {model.subtasks.get(subtask_id)} subtask"
            )
            model.subtasks[subtask_id] = "discarded"

    @rule(data=st.data())
    def has_pending_subtasks(self, data: st.DataObject) -> None:
        task_id = self.task_id(data)
        status, reply = self.w.call(
            "HasPendingSubtasks",
            self.stub.has_pending_subtasks(api.HasPendingSubtasksRequest(task_id=task_id)),
        )
        if self.expect_id_errors(status, task_id, task_id=task_id):
            return
        model = self.tasks[task_id]
        if status is Status.OK and reply is not None and reply.has_pending_subtasks:
            assert not model.aborted
            assert model.holding() < model.parts, "pending, yet every part is held"
            # The spec: if true, the next NextSubtask must succeed.
            subtask_id = self.w.fresh("s")
            status, next_reply = self.w.call(
                "NextSubtask",
                self.stub.next_subtask(
                    api.NextSubtaskRequest(task_id=task_id, subtask_id=subtask_id)
                ),
            )
            assert status is Status.OK
            if next_reply is not None and next_reply.is_set("subtask"):
                model.subtasks[subtask_id] = "computing"
                model.handed[subtask_id] = ("", next_reply.subtask.subtask_params_json)

    @rule(data=st.data())
    def abort_task(self, data: st.DataObject) -> None:
        task_id = self.task_id(data)
        if data.draw(st.integers(0, 3), label="abort a known task") and task_id in self.tasks:
            task_id = self.w.fresh("t")  # mostly spare the known tasks: they have more to test
        status, _ = self.w.call(
            "AbortTask", self.stub.abort_task(api.AbortTaskRequest(task_id=task_id))
        )
        if self.expect_id_errors(status, task_id, task_id=task_id):
            return
        if status is Status.OK:
            self.tasks[task_id].aborted = True

    @rule(data=st.data())
    def abort_subtask(self, data: st.DataObject) -> None:
        task_id = self.task_id(data)
        subtask_id = self.subtask_id(data, task_id)
        status, _ = self.w.call(
            "AbortSubtask",
            self.stub.abort_subtask(
                api.AbortSubtaskRequest(task_id=task_id, subtask_id=subtask_id)
            ),
        )
        if self.expect_id_errors(status, task_id, subtask_id, task_id=task_id):
            return
        model = self.tasks[task_id]
        if status is Status.OK and model.subtasks.get(subtask_id) == "computing":
            model.subtasks[subtask_id] = "aborted"
        if subtask_id not in model.subtasks and not model.aborted:
            assert status is Status.NOT_FOUND, status

    @rule()
    def run_benchmark(self) -> None:
        status, reply = self.w.call(
            "RunBenchmark", self.stub.run_benchmark(api.RunBenchmarkRequest())
        )
        assert status is Status.OK and reply is not None and reply.score > 0

    @rule()
    def shutdown(self) -> None:
        # In-process, Shutdown only sets the server's stop flag: it keeps serving.
        status, _ = self.w.call("Shutdown", self.stub.shutdown(api.ShutdownRequest()))
        assert status is Status.OK

    @invariant()
    def healthy(self) -> None:
        assert self.w.loop.run(self.w.live.healthy())


def complete_tasks(w: World) -> int:
    """Each task not aborted and never failed still completes, with one output per part."""
    completed = 0
    stub = w.live.stub
    for task_id, model in w.tasks.items():
        if model.aborted or model.failures or model.parts > 10:
            continue
        for subtask_id, state in model.subtasks.items():
            if state == "computing":
                w.call(
                    "AbortSubtask",
                    stub.abort_subtask(
                        api.AbortSubtaskRequest(task_id=task_id, subtask_id=subtask_id)
                    ),
                )
        for _ in range(model.parts * 2 + 2):
            status, reply = w.call(
                "HasPendingSubtasks",
                stub.has_pending_subtasks(api.HasPendingSubtasksRequest(task_id=task_id)),
            )
            assert status is Status.OK and reply is not None
            if not reply.has_pending_subtasks:
                break
            subtask_id = w.fresh("s")
            status, next_reply = w.call(
                "NextSubtask",
                stub.next_subtask(api.NextSubtaskRequest(task_id=task_id, subtask_id=subtask_id)),
            )
            assert status is Status.OK and next_reply is not None
            assert next_reply.is_set("subtask")
            folder = w.work / task_id / SUBTASK_OUTPUTS_DIR / subtask_id
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{subtask_id}.out").write_text("done")
            status, verdict = w.call(
                "Verify",
                stub.verify(api.VerifyRequest(task_id=task_id, subtask_id=subtask_id)),
            )
            assert status is Status.OK and verdict is not None
            assert verdict.result == api.VerifyReplyVerifyResult.SUCCESS
        outputs = list((w.work / task_id / TASK_OUTPUTS_DIR).iterdir())
        assert len(outputs) == model.parts, (task_id, model, outputs)
        completed += 1
    return completed


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    work = tmp_path / "work"
    work.mkdir()
    loop = LoopThread()
    started: asyncio.Future[Live] = loop.loop.create_future()
    stop = asyncio.Event()

    async def serve() -> None:
        # Entered and left in one task: the server's task groups require it.
        try:
            async with live_requestor(apps.requestor, work) as live:
                started.set_result(live)
                await stop.wait()
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise

    async def wait_started() -> Live:
        return await started

    serving = asyncio.run_coroutine_threadsafe(serve(), loop.loop)
    try:
        yield World(loop, loop.run(wait_started()), work)
    finally:
        loop.loop.call_soon_threadsafe(stop.set)
        serving.result(timeout=30)
        loop.close()


def test_fuzz_every_rpc(world: World, tmp_path: Path) -> None:
    global WORLD
    WORLD = world
    try:
        run_state_machine_as_test(
            RequestorFuzz,
            settings=settings(
                max_examples=120,
                stateful_step_count=25,
                deadline=None,
                database=None,
                derandomize=True,
                # One live server for the whole test: its state outlives each example,
                # so replaying and shrinking would not be faithful. Report as found.
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        WORLD = None
    completed = complete_tasks(world)
    print(f"{completed} of {len(world.tasks)} tasks completed at the end")
    print(
        f"{world.requests} requests; statuses: "
        f"{ {rpc: sorted(s.name for s in seen) for rpc, seen in world.statuses.items()} }"
    )
    assert world.requests >= MIN_REQUESTS
    # Every RPC was exercised, each with both success and refusal where both exist.
    assert set(world.statuses) == {
        "CreateTask", "NextSubtask", "Verify", "DiscardSubtasks", "RunBenchmark",
        "HasPendingSubtasks", "AbortTask", "AbortSubtask", "Shutdown",
    }  # fmt: skip
    for rpc in ("CreateTask", "NextSubtask", "Verify", "HasPendingSubtasks", "AbortTask"):
        assert Status.OK in world.statuses[rpc] and Status.INVALID_ARGUMENT in world.statuses[rpc]
    assert world.loop.run(world.live.healthy())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]  # nothing outside the work dir
