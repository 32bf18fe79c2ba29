"""The failure-tolerant example: random compute failures, retries, a right total."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples import flaky
from golem_apps.testing import run_local


def test_failures_are_retried_and_the_total_is_right(tmp_path: Path) -> None:
    parts, n = 20, 5000
    result = run_local(
        flaky.requestor,
        flaky.provider,
        params={"parts": parts, "n": n, "fail_rate": 0.5},
        providers=4,
        max_attempts=40,  # 0.5 ** 40: a part never runs out of attempts
        work_dir=tmp_path / "work",
    )
    assert (result.outputs_dir / flaky.OUTPUT).read_text() == f"{(n - 1) * n * (2 * n - 1) // 6}\n"
    assert result.parts == parts
    # With 20 parts failing half the time, some failed (all-pass odds: 1 in a million).
    assert result.failures
    assert all("simulated failure" in failure.reason for failure in result.failures)
    assert result.subtasks == parts + len(result.failures)
    assert result.retries == len(result.failures)


def test_fail_rate_must_be_below_one(tmp_path: Path) -> None:
    from golem_apps import TaskContext

    with pytest.raises(ValueError, match="'fail_rate' must be at least 0 and below 1"):
        list(flaky.split(TaskContext("t", {"fail_rate": 1}, tmp_path, 0)))
