"""Random sequences of RPCs (and restarts) never break the engine's invariants."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golem_apps import AlreadyExists, EngineError, SubtaskNotFound, VerifyResult, WrongState
from golem_apps.constants import SUBTASK_OUTPUTS_DIR
from golem_apps.engine import Engine, Hooks, open_engine
from golem_apps.engine._db import DB_NAME

from .helpers import DIAMOND, TASK, create, outputs, verdict_from_content, write_result

MAX_RETRIES = 3
NODES = 3
PARTS = DIAMOND

# Counted back from the latest subtask issued: recent ones are the live ones.
subtask_ref = st.integers(0, 5)
# The verify hook's verdict comes from the result's first letter; "" is an empty result.
contents = st.sampled_from(["S", "S", "S", "F", "I", "A", ""])
operations = st.lists(
    st.one_of(
        # A hand-out then a successful verification: a task's usual life.
        st.tuples(st.just("cycle"), st.integers(0, NODES - 1)),
        st.tuples(st.just("cycle"), st.integers(0, NODES - 1)),
        st.tuples(st.just("next"), st.integers(0, NODES - 1)),
        st.tuples(st.just("next"), st.integers(0, NODES - 1)),
        # The same NextSubtask again (its reply was lost).
        st.tuples(st.just("next_again"), subtask_ref),
        st.tuples(st.just("verify"), st.just(0), contents),
        st.tuples(st.just("verify"), subtask_ref, contents),
        st.tuples(st.just("verify_missing"), subtask_ref),
        st.tuples(st.just("discard"), st.lists(subtask_ref, max_size=3)),
        st.tuples(st.just("abort_subtask"), subtask_ref),
        st.tuples(st.just("restart")),
        # Aborting ends the task: make it rare so that most sequences go far.
        st.tuples(st.just("abort_task"), st.integers(0, 9)),
    ),
    min_size=15,
    max_size=50,
)


class Snapshot:
    """The engine's state, read from its database."""

    def __init__(self, work_dir: Path) -> None:
        conn = sqlite3.connect(f"file:{work_dir / DB_NAME}?mode=ro", uri=True)
        try:
            self.task = conn.execute("SELECT state, failures, total, done FROM tasks").fetchone()
            parts = conn.execute("SELECT idx, name, status, waiting, subtask FROM parts")
            self.parts = {row[0]: row[1:] for row in parts}
            subtasks = conn.execute("SELECT id, part, node, state FROM subtasks")
            self.subtasks = {row[0]: row[1:] for row in subtasks}
            # Hand-outs a restart may have lost (no backup copy yet).
            lost = conn.execute("SELECT id FROM subtasks WHERE lost = 1 AND state = 'computing'")
            self.lost = {row[0] for row in lost}
            self.deps = conn.execute("SELECT part, dep FROM deps").fetchall()
            # The counters the transactions keep for the task's status.
            counts = conn.execute("SELECT status, n FROM part_counts WHERE n > 0")
            self.part_counts = dict(counts.fetchall())
            counts = conn.execute("SELECT node, state, n FROM subtask_counts WHERE n > 0")
            self.subtask_counts = {(node, state): n for node, state, n in counts}
        finally:
            conn.close()

    def status(self, part: int) -> str:
        return str(self.parts[part][1])

    def ready(self) -> list[int]:
        return sorted(i for i in self.parts if self.status(i) == "ready")

    def node_busy(self, node: str) -> bool:
        """The node holds a live subtask (one a restart may have lost does not count)."""
        return any(
            n == node and s == "computing" and sid not in self.lost
            for sid, (_, n, s) in self.subtasks.items()
        )

    def pending(self) -> bool:
        state, failures, _, _ = self.task
        due = bool(self.ready()) or bool(self.lost)
        return state == "active" and failures <= MAX_RETRIES and due

    def next_part(self) -> int:
        """The part NextSubtask hands out: the first ready one, else a lost hand-out's."""
        ready = self.ready()
        return ready[0] if ready else min(self.subtasks[sid][0] for sid in self.lost)


def check_invariants(snap: Snapshot) -> None:
    state, failures, total, done = snap.task
    assert total == len(PARTS)
    assert done == sum(snap.status(i) == "done" for i in snap.parts)
    assert failures == sum(s == "failure" for _, _, s in snap.subtasks.values())
    for index, (_, status, waiting, subtask) in snap.parts.items():
        deps = [dep for part, dep in snap.deps if part == index]
        assert waiting == sum(snap.status(dep) != "done" for dep in deps)
        assert status in ("ready", "blocked", "computing", "done")
        assert (status == "blocked") == (waiting > 0)
        live = [sid for sid, (p, _, s) in snap.subtasks.items() if p == index and s == "computing"]
        won = [sid for sid, (p, _, s) in snap.subtasks.items() if p == index and s == "success"]
        standby = [sid for sid, (p, _, s) in snap.subtasks.items() if p == index and s == "standby"]
        # At most one live subtask per part, at most one result, and the part knows which;
        # a hand-out on standby has its backup copy live.
        assert live == ([subtask] if status == "computing" else [])
        assert won == ([subtask] if status == "done" else [])
        assert not standby or live
    assert snap.part_counts == dict(Counter(status for _, status, _, _ in snap.parts.values()))
    assert snap.subtask_counts == dict(Counter((n, s) for _, n, s in snap.subtasks.values()))
    for node in {n for _, n, _ in snap.subtasks.values()}:
        live = [
            sid
            for sid, (_, n, s) in snap.subtasks.items()
            if n == node and s == "computing" and sid not in snap.lost
        ]
        assert len(live) <= 1
    assert state in ("active", "finished", "aborted")
    assert (state == "finished") <= (done == total)
    assert (done == total) <= (state in ("finished", "aborted"))


async def run(work_dir: Path, ops: list[tuple[Any, ...]]) -> None:
    hooks = Hooks(verify=verdict_from_content, max_retries=MAX_RETRIES)
    issued: list[str] = []
    contents: dict[str, str] = {}
    # subtask id -> (node, params handed out); subtask id -> its first verdict
    assignments: dict[str, tuple[str, dict[str, Any]]] = {}
    verdicts: dict[str, VerifyResult] = {}

    def pick(ref: int) -> str:
        return issued[-1 - ref % len(issued)] if issued else "ghost"

    async with AsyncExitStack() as stack:
        engine: Engine = await stack.enter_async_context(open_engine(work_dir, hooks))
        await create(engine, work_dir, PARTS)
        expanded: list[tuple[Any, ...]] = []
        for op in ops:
            expanded.extend([("next", op[1]), ("verify", 0, "S")] if op[0] == "cycle" else [op])
        after = Snapshot(work_dir)
        for op in expanded:
            before = after
            kind = op[0]
            if kind == "discard":
                named = [pick(ref) for ref in op[1]]
            elif kind in ("verify", "verify_missing", "abort_subtask", "next_again"):
                named = [pick(op[1])]
            else:
                named = []
            try:
                if kind == "next":
                    node = f"node{op[1]}"
                    subtask_id = f"s{len(issued)}"
                    handed = await engine.next_subtask(TASK, subtask_id, node)
                    issued.append(subtask_id)
                    if handed is None:
                        assert not before.pending() or before.node_busy(node)
                    else:
                        assert before.pending() and not before.node_busy(node)
                        assert handed.params == {"p": before.parts[before.next_part()][0]}
                        assignments[subtask_id] = (node, handed.params)
                elif kind == "next_again":
                    subtask_id = pick(op[1])
                    if subtask_id not in assignments:
                        continue  # no hand-out to retry
                    node, params = assignments[subtask_id]
                    part, _, state = before.subtasks[subtask_id]
                    deps_done = all(
                        before.status(dep) == "done" for p, dep in before.deps if p == part
                    )
                    # The same answer, even after a verdict, unless the subtask was
                    # aborted or discarded (or its inputs are gone); another node's call
                    # with that id is a new request.
                    if state in ("aborted", "discarded") or not deps_done:
                        with pytest.raises(AlreadyExists):
                            await engine.next_subtask(TASK, subtask_id, node)
                    else:
                        again = await engine.next_subtask(TASK, subtask_id, node)
                        assert again is not None and again.params == params
                    with pytest.raises(AlreadyExists):
                        await engine.next_subtask(TASK, subtask_id, f"{node}-other")
                elif kind in ("verify", "verify_missing"):
                    subtask_id = pick(op[1])
                    known = before.subtasks.get(subtask_id)
                    live = known is not None and known[2] in ("computing", "standby")
                    # A node puts results only for subtasks it computes.
                    if kind == "verify" and (known is None or live):
                        content = op[2] + subtask_id
                        write_result(work_dir, subtask_id, content)
                        contents[subtask_id] = content
                    if kind == "verify_missing" and live:
                        shutil.rmtree(work_dir / TASK / SUBTASK_OUTPUTS_DIR / subtask_id, True)
                    verdict = await engine.verify(TASK, subtask_id)
                    state = before.subtasks[subtask_id][2]
                    if state == "superseded":
                        # Its other copy was verified first: not used, not counted.
                        assert verdict.result is VerifyResult.SUCCESS
                        assert verdict.reason.startswith("not used")
                    elif state in ("success", "failure"):
                        # A retry: the verdict answered before.
                        assert verdict.result == verdicts[subtask_id]
                    else:
                        assert state in ("computing", "standby")
                        if kind == "verify_missing":
                            assert verdict.result is VerifyResult.FAILURE
                        else:
                            expected = {"S": 0, "F": 1, "A": 2, "I": 3}.get(op[2][:1], 1)
                            assert verdict.result == expected
                        if verdict.result is not VerifyResult.AWAITING_DATA:
                            verdicts[subtask_id] = verdict.result
                elif kind == "discard":
                    ids = [pick(ref) for ref in op[1]]
                    discarded = await engine.discard_subtasks(TASK, ids)
                    after = Snapshot(work_dir)
                    changed = {
                        sid
                        for sid, (_, _, s) in after.subtasks.items()
                        if s == "discarded" and before.subtasks[sid][2] != "discarded"
                    }
                    assert sorted(discarded) == sorted(changed)
                    assert len(discarded) == len(set(discarded))
                elif kind == "abort_subtask":
                    await engine.abort_subtask(TASK, pick(op[1]))
                elif kind == "abort_task":
                    if op[1] == 0:
                        await engine.abort_task(TASK)
                        assert before.task[0] != "aborted"
                elif kind == "restart":
                    await stack.aclose()
                    engine = await stack.enter_async_context(open_engine(work_dir, hooks))
            except SubtaskNotFound:
                assert before.task[0] != "aborted"
                assert any(sid not in before.subtasks for sid in named)
            except WrongState:
                if before.task[0] == "aborted":
                    assert kind != "restart"
                elif kind == "discard":
                    assert before.task[0] == "finished"
                else:
                    assert kind in ("verify", "verify_missing", "abort_subtask")
                    state = before.subtasks[named[0]][2]
                    assert state not in ("computing", "standby")
                    if kind != "abort_subtask":
                        assert state in ("aborted", "discarded")
            except EngineError as exc:
                raise AssertionError(f"{kind}: unexpected {exc!r}") from exc
            after = Snapshot(work_dir)
            check_invariants(after)
            if after.task[0] == "aborted":
                with pytest.raises(WrongState, match="aborted"):
                    await engine.has_pending_subtasks(TASK)
                continue
            assert await engine.has_pending_subtasks(TASK) == after.pending()
            if after.task[0] == "finished":
                # task_outputs holds exactly the verified results.
                results = {
                    f"{after.parts[p][0]}-result.txt": contents[sid]
                    for sid, (p, _, s) in after.subtasks.items()
                    if s == "success"
                }
                assert outputs(work_dir) == results


@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(operations)
def test_random_rpc_sequences_keep_the_invariants(ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(run, Path(tmp), ops, backend="asyncio")
