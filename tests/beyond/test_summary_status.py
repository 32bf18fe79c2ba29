"""The runner's summary shows the task status: nodes, bans, retries, redundancy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from golem_apps import NodeStatus, TaskStatus, read_task_status
from golem_apps._taskstatus import write_task_status
from golem_apps.runner import RunResult, format_summary

STATUS = TaskStatus(
    task_id="t",
    state="finished",
    parts={"ready": 0, "blocked": 0, "computing": 0, "done": 2, "total": 2},
    nodes={
        "good": NodeStatus(subtasks={"success": 2}),
        "bad": NodeStatus(subtasks={"failure": 2}, failures=2, banned="2 failed verifications"),
    },
    failures=2,
    max_retries=5,
    redundancy=2,
    ban_after=2,
)


def result(status: TaskStatus | None) -> RunResult:
    return RunResult("t", 2, 6, (), 1.0, Path("/out"), (), None, status)


def test_the_summary_lists_nodes_bans_and_retries() -> None:
    text = format_summary(result(STATUS))
    assert "redundancy:     2 (results vote)" in text
    assert "failed verifications: 2 (the app allows 5: max_retries)" in text
    assert "- good: 2 success" in text
    assert "banned:         bad: 2 failed verifications" in text
    # Retries count the subtasks beyond redundancy x parts.
    assert result(STATUS).retries == 2


def test_without_a_status_the_summary_is_as_before() -> None:
    text = format_summary(result(None))
    assert "banned" not in text and "nodes:" not in text
    assert result(None).retries == 4


def test_the_status_file_round_trips(tmp_path: Path) -> None:
    write_task_status(tmp_path, STATUS)
    assert read_task_status(tmp_path) == STATUS
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temporary left


@pytest.mark.parametrize("content", ["[]", '{"state": "x"}', "not json"])
def test_a_bad_status_file_is_a_value_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "status.json").write_text(content)
    with pytest.raises(ValueError, match="status"):
        read_task_status(tmp_path)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"redundancy": 0}, "redundancy"),
        ({"redundancy": True}, "redundancy"),
        ({"ban_after": -1}, "ban_after"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_bad_task_options_are_refused_naming_them(options: dict[str, Any], named: str) -> None:
    from golem_apps import HandlerError, Requestor, TaskContext

    app = Requestor("opts")

    def split(task: TaskContext) -> list[Any]:
        return []

    with pytest.raises(HandlerError, match=rf"{named}=\.\.\.\) must be an int >= "):
        app.task(**options)(split)


def test_task_options_reach_the_registry() -> None:
    from golem_apps import Requestor, TaskContext, VerifyContext

    app = Requestor("opts")

    @app.task(redundancy=3, ban_after=2)
    def split(task: TaskContext) -> list[Any]:
        return []

    @app.compare
    def same(a: VerifyContext, b: VerifyContext) -> bool:
        return True

    assert (app.task_options.redundancy, app.task_options.ban_after) == (3, 2)
    assert app.handler("compare") is same


def test_one_retries_figure_and_aborted_subtasks_say_why() -> None:
    crashed = TaskStatus(
        task_id="t",
        state="finished",
        parts={"ready": 0, "blocked": 0, "computing": 0, "done": 2, "total": 2},
        nodes={"p1": NodeStatus(subtasks={"aborted": 3, "success": 2})},
        failures=0,
        max_retries=3,
        redundancy=1,
        ban_after=0,
    )
    text = format_summary(RunResult("t", 2, 5, (), 1.0, Path("/out"), (), None, crashed))
    assert len(re.findall(r"\d+ retr", text)) == 1  # one retries figure: "5 (3 retries)"
    assert "  subtasks:       5 (3 retries)" in text
    assert "  failed verifications: 0 (the app allows 3: max_retries)" in text
    assert "    - p1: 3 aborted (the compute failed), 2 success" in text
