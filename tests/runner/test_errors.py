"""Errors a user can act on: the exception type, the failing part's traceback, the dirs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from golem_apps.runner import TaskFailed, format_summary, run_task
from tests.conftest import ROOT

APP = """\
from pathlib import Path

from golem_apps import ComputeContext, Part, Provider, Requestor, TaskContext

requestor = Requestor("errors")
provider = Provider()


@requestor.task
def split(task: TaskContext) -> list[Part]:
    return [Part(params={"text": t}, name=t) for t in task.params["texts"]]


def shout(text: str) -> str:
    if text == "boom":
        raise ValueError(f"cannot shout {text!r}")
    return text.upper()


@provider.compute
def compute(ctx: ComputeContext) -> Path:
    out = ctx.subtask_dir / "out.txt"
    out.write_text(shout(ctx.params["text"]))
    return out
"""

#: The same app with a merge that raises.
MERGE_APP = (
    APP
    + """

from golem_apps import MergeContext


@requestor.merge
def merge(task: MergeContext) -> None:
    raise RuntimeError("no room for the outputs")
"""
)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "errors_app.py"
    path.write_text(APP)
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "golem_apps.run", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def split_error(stderr: str) -> tuple[str, str]:
    """(what comes before the last line, the last line)."""
    head, _, last = stderr.rstrip("\n").rpartition("\n")
    return head, last


@pytest.mark.parametrize("in_process", [False, True])
def test_a_split_error_names_its_type_and_shows_the_apps_traceback(
    app: Path, in_process: bool
) -> None:
    proc = run_cli(str(app), "--params", "{}", *(["--in-process"] if in_process else []))
    assert proc.returncode == 1
    head, last = split_error(proc.stderr)
    assert last.startswith("golem_apps.run: error: CreateTask refused: KeyError: 'texts' (")
    assert "work dir " in last and " kept" in last  # a temporary work dir it leaves behind
    # The traceback of the app's split: its own frames, not golem_apps' plumbing.
    traceback = head[head.index("Traceback (most recent call last):") :]
    assert f'File "{app}", line 11, in split' in traceback
    assert "golem_apps/" not in traceback.split("\n(from ")[0]
    assert "KeyError: 'texts'" in traceback
    assert proc.stderr.count("Traceback (most recent call last)") == 1
    if not in_process:
        assert traceback.rstrip().endswith("requestor.log)")  # where it was found


def test_a_compute_error_shows_the_providers_traceback(app: Path, tmp_path: Path) -> None:
    proc = run_cli(
        str(app), "--params", '{"texts": ["a", "boom"]}', "--max-attempts", "2",
        "--work-dir", str(tmp_path / "work"),
    )  # fmt: skip
    assert proc.returncode == 1
    head, last = split_error(proc.stderr)
    assert "last failure: compute failed: ValueError: cannot shout 'boom'" in last
    assert f"logs in {tmp_path / 'work' / 'logs'}" in last
    assert " kept" not in last  # the user's own work dir: nothing to point out
    assert "in shout\n" in head and 'raise ValueError(f"cannot shout {text!r}")' in head
    assert head.rstrip().endswith(".log)") and "requestor.log" not in head


def test_a_merge_error_ends_the_run_with_that_error(tmp_path: Path) -> None:
    # The last Verify merges: its verdict stands, the merge's error is the run's.
    app = tmp_path / "merge_app.py"
    app.write_text(MERGE_APP)
    proc = run_cli(
        str(app), "--params", '{"texts": ["a", "b"]}', "--work-dir", str(tmp_path / "work")
    )
    assert proc.returncode == 1
    head, last = split_error(proc.stderr)
    assert last.startswith("golem_apps.run: error: Verify failed: ")
    assert "RuntimeError: no room for the outputs" in last
    assert "AbortSubtask" not in proc.stderr
    # The merge's traceback, from the requestor's log.
    assert "in merge\n" in head and 'raise RuntimeError("no room for the outputs")' in head
    assert head.rstrip().endswith("requestor.log)")


@pytest.mark.anyio
async def test_in_process_runs_carry_the_apps_own_exception(app: Path, tmp_path: Path) -> None:
    with pytest.raises(TaskFailed) as failed:
        await run_task(
            str(app), params={"texts": ["boom"]}, in_process=True, max_attempts=1,
            work_dir=tmp_path / "work",
        )  # fmt: skip
    exc = failed.value.app_exception
    assert isinstance(exc, ValueError) and str(exc) == "cannot shout 'boom'"
    assert failed.value.app_traceback is not None
    assert failed.value.app_traceback.endswith("ValueError: cannot shout 'boom'")


@pytest.mark.anyio
async def test_a_run_without_out_says_where_the_outputs_and_the_work_dir_are(
    app: Path,
) -> None:
    result = await run_task(str(app), params={"texts": ["a"]}, in_process=True)
    try:
        assert result.work_dir is not None and result.temporary
        text = format_summary(result)
        assert f"outputs:        {result.outputs_dir} (in the work dir; --out DIR" in text
        assert f"work dir:       {result.work_dir} (a temporary folder, left behind" in text
    finally:
        import shutil

        shutil.rmtree(result.work_dir or "/nonexistent", ignore_errors=True)
