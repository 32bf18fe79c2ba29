"""The verification policy seam: each task's redundancy picks its policy, which decides alone."""

from __future__ import annotations

import sqlite3

import pytest

from golem_apps.engine._policy import MajorityVote, SingleResult, VerificationPolicy, policy_of
from golem_apps.engine._rows import TaskRow
from golem_apps.engine._states import TaskState


def task(redundancy: int) -> TaskRow:
    return TaskRow(TaskState.ACTIVE, failures=0, total=1, done=0, redundancy=redundancy)


def test_one_result_per_part_or_a_majority_of_k() -> None:
    single = policy_of(task(1))
    assert isinstance(single, SingleResult)
    assert (single.copies, single.distinct_nodes) == (1, False)
    for copies, quorum in ((2, 2), (3, 2), (4, 3), (5, 3)):
        vote = policy_of(task(copies))
        assert isinstance(vote, MajorityVote)
        assert (vote.copies, vote.quorum, vote.distinct_nodes) == (copies, quorum, True)
    assert policy_of(task(3)) is policy_of(task(3))  # one object per redundancy


def test_a_policy_must_make_every_decision() -> None:
    class Partial(VerificationPolicy):
        def take(self, conn: sqlite3.Connection, task_id: str, part: int, subtask_id: str) -> None:
            pass

    with pytest.raises(TypeError, match="abstract"):
        Partial()  # type: ignore[abstract]
