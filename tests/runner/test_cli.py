"""``python -m golem_apps.run``: usage errors, Ctrl-C, and the walls around the runner."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from golem_apps import run
from golem_apps.runner import PlainReporter, RichReporter, auto_reporter
from tests.conftest import ROOT

APP = "tests.apps.runner_app"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([APP, "--params", "{oops"], "--params is not valid JSON"),
        ([APP, "--params", "[1, 2]"], "--params must be a JSON object, not list"),
        ([APP, "--params", "@/nonexistent/params.json"], "cannot read --params file"),
        ([APP, "--providers", "0"], "argument --providers: invalid positive integer value: '0'"),
        ([APP, "--subtask-timeout", "-1"], "argument --subtask-timeout: invalid positive number"),
        ([APP, "--max-subtasks", "x"], "argument --max-subtasks: invalid non-negative integer"),
        ([APP, "--input", "/nonexistent/in.txt"], "input /nonexistent/in.txt does not exist"),
        ([], "the following arguments are required: APP (or both --requestor-cmd and"),
        (["--provider-cmd", "python app.py"], "the following arguments are required: APP"),
        ([APP, "--provider-cmd", ""], "--provider-cmd is empty"),
        ([APP, "--requestor-cmd", "no-such-program-x"], "--requestor-cmd: command 'no-such-pro"),
        ([APP, "--in-process", "--provider-cmd", "python"], "--in-process serves APP: it takes"),
        (["tests.apps.sample:requestor"], "tests.apps.sample:requestor is a Requestor without"),
        (["tests.apps.sample:nope"], "module 'tests.apps.sample' has no attribute 'nope'"),
        (["tests.apps.sample:Requestor.x"], "module 'tests.apps.sample' has no attribute"),
        (["no_such_app"], "cannot import module 'no_such_app'"),
        (["tests/apps/no_such_app.py"], "no such file: "),
        (["tests.apps.only_requestor"], "module 'tests.apps.only_requestor' has no attribute"),
        (
            ["tests.apps.only_requestor:no_compute"],
            "tests.apps.only_requestor:no_compute: the provider has no @provider.compute handler",
        ),
        (
            ["tests.apps.only_requestor:no_task"],
            "tests.apps.only_requestor:no_task: the requestor has no @requestor.task handler",
        ),
        (
            ["tests.apps.only_requestor:swapped"],
            "tests.apps.only_requestor:swapped: "
            "'requestor' is a Provider, not a golem_apps.Requestor",
        ),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"golem_apps.run: error: {message}")
    assert err.count("\n") == 1


def test_params_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"parts": [{"text": "x"}]}))
    assert run.parse_params(f"@{path}") == {"parts": [{"text": "x"}]}


def test_a_task_that_cannot_finish_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = json.dumps({"parts": [{"name": "bad", "fail": True}]})
    argv = [APP, "--params", params, "--in-process", "--max-attempts", "2"]
    code = run.main([*argv, "--work-dir", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    # The app's traceback (its frames only), once, then the one-line error.
    head, _, last = err.rstrip("\n").rpartition("\n")
    assert last.startswith("golem_apps.run: error: a part (params")
    assert (
        "failed 2 times; last failure: compute failed: RuntimeError: part bad asked to fail" in last
    )
    assert head.startswith("golem_apps.run: the app failed:\nTraceback (most recent call last):")
    assert head.count("Traceback") == 1
    assert 'runner_app.py", line' in head and "golem_apps/server" not in head
    assert head.endswith("RuntimeError: part bad asked to fail")


def test_an_app_without_a_provider_is_refused_before_any_process_starts(
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, "-m", "golem_apps.run", "tests.apps.only_requestor",
         "--work-dir", str(work)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == (
        "golem_apps.run: error: module 'tests.apps.only_requestor' has no attribute 'provider'\n"
    )
    assert not work.exists()  # nothing was laid out, no requestor was started


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP])
def test_sigint_aborts_and_leaves_no_child_behind(tmp_path: Path, signum: int) -> None:
    # SIGINT: Ctrl-C; SIGHUP: the terminal closed.
    markers = tmp_path / "markers"
    markers.mkdir()
    params = {"parts": [{"name": n, "slow_once": str(markers)} for n in ("a", "b", "c")]}
    runner = subprocess.Popen(
        [sys.executable, "-m", "golem_apps.run", APP, "--params", json.dumps(params),
         "--providers", "2", "--work-dir", str(tmp_path / "work")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # Both providers are computing (hanging) once both pid files are written.
        deadline = time.monotonic() + 60  # a safety bound, not a timing assertion
        while not all((markers / f"{n}.pid").exists() for n in ("a", "b")):
            if runner.poll() is not None:
                pytest.fail(f"runner exited early: {runner.communicate()}")
            if time.monotonic() > deadline:
                pytest.fail("the providers never started computing")
            time.sleep(0.02)
        children = psutil.Process(runner.pid).children(recursive=True)
        # The role comes before the port, at the end; beside them, the runner's watchdog.
        roles = sorted(c.cmdline()[-2] for c in children if "golem_apps.serve" in c.cmdline())
        assert roles == ["provider", "provider", "requestor"]
        assert any(arg.endswith("_reaper.py") for c in children for arg in c.cmdline())
        runner.send_signal(signum)
        runner.send_signal(signum)  # an impatient second Ctrl-C changes nothing
        _, err = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 130
    assert "interrupted: task aborted" in err
    assert "Traceback" not in err
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []
    # The requestor was asked to abort the task before it was stopped.
    assert len(list((tmp_path / "work" / "requestor").glob("*.aborted"))) == 1


def test_auto_reporter_plain_when_not_a_terminal() -> None:
    assert isinstance(auto_reporter(io.StringIO()), PlainReporter)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_reporter_rich_on_a_terminal_plain_without_rich(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(auto_reporter(_Terminal()), RichReporter)
    monkeypatch.setitem(sys.modules, "rich", None)  # import rich now raises ImportError
    assert isinstance(auto_reporter(_Terminal()), PlainReporter)


def test_provider_start_up_never_imports_the_runner_or_rich() -> None:
    code = (
        "import sys, golem_apps.serve, golem_apps.server._provider\n"
        "print(sorted(m for m in sys.modules if m == 'rich' or m.startswith('golem_apps.runner')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == "[]"


def test_max_subtasks_reaches_create_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = json.dumps({"parts": [{"text": "a"}, {"text": "b"}]})
    argv = [APP, "--params", params, "--in-process", "--max-subtasks", "1"]
    assert run.main([*argv, "--work-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("golem_apps.run: error: CreateTask refused: ")
    assert "max_subtasks_count=1" in err


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--out", "the outputs folder {} exists and is not a folder"),
        ("--work-dir", "the work dir {} exists and is not a folder"),
    ],
)
def test_folders_that_are_files_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, message: str
) -> None:
    path = tmp_path / "a-file"
    path.write_text("")
    assert run.main([APP, "--in-process", flag, str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"golem_apps.run: error: {message.format(path)}\n"


@pytest.mark.slow
def test_sigint_in_process_does_not_wait_for_a_stubborn_compute(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    params = {"parts": [{"name": "a", "slow_once": str(markers), "stubborn": True}]}
    runner = subprocess.Popen(
        [sys.executable, "-m", "golem_apps.run", APP, "--params", json.dumps(params),
         "--in-process", "--work-dir", str(tmp_path / "work")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60  # a safety bound, not a timing assertion
        while not (markers / "a.pid").exists():
            if runner.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the compute never started: {runner.communicate()}")
            time.sleep(0.02)
        runner.send_signal(signal.SIGINT)
        # The compute sleeps for a minute more: the command must not wait for it.
        _, err = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 130
    assert "interrupted: task aborted" in err
