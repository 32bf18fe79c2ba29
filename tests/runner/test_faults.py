"""Faults a node survives, with real processes: a killed runner, and a rerun that resumes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.runner_app"
#: Safety bound on waiting for the run to get somewhere (not a timing assertion).
WAIT_LIMIT = 60.0
#: How soon every process of a killed runner must be gone (the issue's bound).
GONE_WITHIN = 5.0


def start_runner(work_dir: Path, params: dict[str, Any], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "golem_apps.run", APP, "--params", json.dumps(params),
         "--providers", "2", "--work-dir", str(work_dir), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_until(runner: subprocess.Popen[str], done: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not done():
        if runner.poll() is not None:
            pytest.fail(f"the runner exited before {what}: {runner.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail(f"never saw {what}")
        time.sleep(0.02)


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running; a zombie has ended (whoever adopted it may not reap it at once)."""
    left = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(process)
        except psutil.NoSuchProcess:
            pass
    return left


def killed_and_left(
    runner: subprocess.Popen[str], children: list[psutil.Process]
) -> list[psutil.Process]:
    """SIGKILL the runner: those of ``children`` still alive GONE_WITHIN s later."""
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    deadline = time.monotonic() + GONE_WITHIN
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive(children)


def stop_all(runner: subprocess.Popen[str], children: list[psutil.Process]) -> None:
    """Whatever a test left running: the runner, and those of ``children`` still alive."""
    if runner.poll() is None:
        runner.kill()
    runner.communicate()
    for process in alive(children):
        process.kill()


#: The helpers' sleeps, in seconds: numbers no other test uses, to find them by.
HELPER, LOOSE = 3011, 3021


def helpers() -> list[psutil.Process]:
    """The ``sleep`` helpers the providers' commands left running."""
    wanted = (["sleep", str(HELPER)], ["sleep", str(LOOSE)])
    return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] in wanted]


def gated(gate: Path, *names: str) -> dict[str, Any]:
    return {"parts": [{"name": n, "text": f"text {n}", "gate": str(gate)} for n in names]}


@pytest.mark.slow
def test_a_killed_runner_leaves_no_process_behind(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    # Each provider's command is a shell that leaves two helpers running (processes
    # of the app's own that the runner never started): one in the provider's process
    # group, one double-forked into a session of its own (out of the group, and no
    # longer the provider's descendant), and then execs the server.
    provider_cmd = (
        f"sh -c 'sleep {HELPER} & (setsid sleep {LOOSE} &) ; exec \"$@\"' sh {sys.executable} "
        f"-m golem_apps.serve {APP} --work-dir {{work_dir}}"
    )
    runner = start_runner(tmp_path / "work", gated(gate, "a", "b"), "--provider-cmd", provider_cmd)
    children: list[psutil.Process] = []
    try:
        wait_until(
            runner,
            lambda: (gate / "a.started").exists() and (gate / "b.started").exists(),
            "both providers computing",
        )
        children = psutil.Process(runner.pid).children(recursive=True)
        wait_until(runner, lambda: len(helpers()) == 4, "the helpers started")
        children = psutil.Process(runner.pid).children(recursive=True)
        assert len(children) == 6  # requestor, 2 providers, their 2 grouped helpers, the watchdog
        children += [h for h in helpers() if h not in children]  # and the 2 loose ones
        assert killed_and_left(runner, children) == []
    finally:
        stop_all(runner, children)


def settled(work_dir: Path) -> list[dict[str, Any]]:
    """The runner's journal lines of subtasks that got their verdict."""
    path = work_dir / "runner" / "subtasks.jsonl"
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return [line for line in lines if line["step"] == "settled" and line["verified"]]


def tasks(work_dir: Path) -> list[Path]:
    """The requestor's task folders (beside its engine's dot files)."""
    return [p for p in (work_dir / "requestor").iterdir() if not p.name.startswith(".")]


@pytest.mark.slow
def test_a_rerun_on_the_work_dir_resumes_the_unfinished_task(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    work_dir = tmp_path / "work"
    params = gated(gate, "a", "b", "c")
    (gate / "b.go").touch()
    (gate / "c.go").touch()  # b and c finish; a waits at its gate
    first = start_runner(work_dir, params)
    try:
        wait_until(
            first,
            lambda: (gate / "a.started").exists() and len(settled(work_dir)) == 2,
            "b and c verified while a computes",
        )
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    [task_dir] = tasks(work_dir)
    (gate / "a.go").touch()
    second = subprocess.run(
        [sys.executable, "-m", "golem_apps.run", APP, "--params", json.dumps(params),
         "--providers", "2", "--work-dir", str(work_dir), "--out", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert f"task {task_dir.name} resumed from an earlier run" in second.stdout
    assert "resumed:        an earlier run's unfinished task, continued" in second.stdout
    assert "parts verified: 3" in second.stdout
    # Only a was computed again: b and c kept their verdicts from the first run.
    assert "subtasks:       1 " in second.stdout
    assert tasks(work_dir) == [task_dir]
    outputs = {p.name: p.read_text() for p in (tmp_path / "out").iterdir()}
    assert outputs == {"a.txt": "TEXT A", "b.txt": "TEXT B", "c.txt": "TEXT C"}
    # Finished: a third run on the work dir is a new task.
    third = subprocess.run(
        [sys.executable, "-m", "golem_apps.run", APP, "--params", json.dumps(params),
         "--providers", "2", "--work-dir", str(work_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert third.returncode == 0, third.stderr
    assert "resumed" not in third.stdout
    assert len(tasks(work_dir)) == 2


def test_a_rerun_with_other_params_is_refused(tmp_path: Path) -> None:
    from golem_apps.runner._journal import TaskRecord, save_task

    save_task(tmp_path, TaskRecord("t-1", {"parts": []}, created=True))
    proc = subprocess.run(
        [sys.executable, "-m", "golem_apps.run", APP, "--params", '{"parts": [{"text": "x"}]}',
         "--work-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == (
        f"golem_apps.run: error: the work dir {tmp_path} holds the unfinished task t-1 with "
        "other params: rerun with the same params to continue it, or use another work dir\n"
    )
