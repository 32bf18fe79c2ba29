"""The summary the run command prints."""

from __future__ import annotations

from pathlib import Path

from golem_apps.runner import Failure, RunResult, format_summary


def result(failures: int, subtasks: int, parts: int = 3) -> RunResult:
    return RunResult(
        task_id="task-1",
        parts=parts,
        subtasks=subtasks,
        failures=tuple(
            Failure(f"sub{i:08d}-x", f"node{i}", f"reason {i}") for i in range(failures)
        ),
        wall_time=2.345,
        outputs_dir=Path("/out"),
        output_files=(Path("/out/a.png"),),
        work_dir=None,
    )


def test_counts_outputs_and_failures() -> None:
    text = format_summary(result(failures=1, subtasks=4))
    assert text.splitlines() == [
        "task task-1 finished in 2.3 s",
        "  parts verified: 3",
        "  subtasks:       4 (1 retry)",
        "  failures:       1",
        "    - sub00000 on node0: reason 0",
        "  outputs:        /out",
        "    /out/a.png",
    ]


def test_long_failure_lists_are_cut() -> None:
    text = format_summary(result(failures=12, subtasks=15))
    assert "  subtasks:       15 (12 retries)" in text
    assert text.count("    - sub") == 10
    assert "    ... and 2 more" in text
