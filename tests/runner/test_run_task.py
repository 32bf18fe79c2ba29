"""The runner as a library: run_task over the wire, in-process and with child processes."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from golem_apps import TaskFailed
from golem_apps.runner import PlainReporter, Reporter, RunResult, Stats, run_task

APP = "tests.apps.runner_app"


#: Safety bound on waiting for a test app's pid file (not a timing assertion).
WAIT_LIMIT = 60.0


def wait_for_pid(path: Path) -> int:
    """The pid a slow_once compute wrote, once it is there."""
    deadline = time.monotonic() + WAIT_LIMIT
    while not (path.exists() and path.read_text()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)
    return int(path.read_text())


def command_line(process: psutil.Process) -> list[str]:
    """A child's command line; empty for one that already exited (a provider not yet reaped)."""
    try:
        command: list[str] = process.cmdline()
    except psutil.Error:
        return []
    return command


def texts(result: RunResult) -> dict[str, str]:
    return {path.name: path.read_text() for path in result.output_files}


class Recorder(Reporter):
    """Keeps the events of a run."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.node_events: list[tuple[str, str, str]] = []
        self.stopped = False

    def start(self, stats: Stats, task_id: str, work_dir: str) -> None:
        self.events.append(("start", task_id, work_dir))

    def event(self, kind: str, subtask_id: str, detail: str = "") -> None:
        self.events.append((kind, subtask_id, detail))

    def node_event(self, kind: str, node_id: str, detail: str = "") -> None:
        self.node_events.append((kind, node_id, detail))

    def stop(self) -> None:
        self.stopped = True

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.events]


def parts(*specs: dict[str, Any]) -> dict[str, Any]:
    return {"parts": list(specs)}


@pytest.mark.anyio
async def test_in_process_run_computes_every_part(tmp_path: Path) -> None:
    recorder = Recorder()
    result = await run_task(
        APP,
        params=parts(*({"name": f"p{i}", "text": f"text {i}"} for i in range(5))),
        providers=3,
        in_process=True,
        work_dir=tmp_path / "work",
        out=tmp_path / "out",
        reporter=recorder,
    )
    assert texts(result) == {f"p{i}.txt": f"TEXT {i}" for i in range(5)}
    assert result.outputs_dir == tmp_path / "out"
    assert (result.parts, result.subtasks, result.failures, result.retries) == (5, 5, (), 0)
    assert recorder.kinds().count("started") == 5
    assert recorder.kinds().count("verified") == 5
    assert recorder.stopped
    # The node's layout: the requestor's task dir (and its status file beside the
    # node's folders) and one task dir per provider node.
    task_dir = tmp_path / "work" / "requestor" / result.task_id
    assert sorted(p.name for p in task_dir.iterdir()) == [
        "status.json", "subtask_inputs", "subtask_outputs", "task_inputs", "task_outputs",
    ]  # fmt: skip
    nodes = list((tmp_path / "work" / "providers").iterdir())
    assert 1 <= len(nodes) <= 3
    assert all((node / result.task_id / "subtask_inputs").is_dir() for node in nodes)


@pytest.mark.anyio
async def test_providers_started_ahead_and_not_needed_leave_nothing(
    tmp_path: Path, python: str
) -> None:
    # Three slots, each with a provider started while the requestor starts; one part:
    # one of them computes it, the other two are stopped, their logs gone.
    result = await run_task(
        APP, params=parts({"name": "a", "text": "a"}), providers=3, python=python,
        work_dir=tmp_path / "work",
    )  # fmt: skip
    assert texts(result) == {"a.txt": "A"}
    [subtask_log] = [p for p in (tmp_path / "work" / "logs").iterdir() if p.name != "requestor.log"]
    uuid.UUID(subtask_log.stem)  # the subtask's log, named by its id (no provider's of its own)
    assert [
        child for child in psutil.Process().children(recursive=True)
        if "provider" in command_line(child)
    ] == []  # fmt: skip


@pytest.mark.anyio
async def test_inputs_land_in_task_inputs(tmp_path: Path) -> None:
    source = tmp_path / "data.txt"
    source.write_text("payload")
    result = await run_task(
        APP,
        params=parts({"text": "x"}),
        inputs=[source],
        providers=1,
        in_process=True,
        work_dir=tmp_path / "work",
    )
    inputs = tmp_path / "work" / "requestor" / result.task_id / "task_inputs"
    assert (inputs / "data.txt").read_text() == "payload"
    # Without --out the outputs stay in the requestor's task_outputs, and the work dir is kept.
    assert result.outputs_dir == inputs.parent / "task_outputs"
    assert result.work_dir == tmp_path / "work"


@pytest.mark.anyio
async def test_a_failing_compute_is_retried_and_gives_up_after_max_attempts(
    tmp_path: Path,
) -> None:
    recorder = Recorder()
    with pytest.raises(TaskFailed, match=r"failed 3 times; last failure: .*asked to fail"):
        await run_task(
            APP,
            params=parts({"name": "ok", "text": "ok"}, {"name": "bad", "fail": True}),
            providers=2,
            max_attempts=3,
            in_process=True,
            work_dir=tmp_path,
            reporter=recorder,
        )
    aborted = await anyio.to_thread.run_sync(lambda: list(tmp_path.glob("requestor/*.aborted")))
    assert len(aborted) == 1  # AbortTask was sent
    failed = [detail for kind, _, detail in recorder.events if kind == "failed"]
    assert len(failed) == 3
    assert all("part bad asked to fail" in detail for detail in failed)
    assert recorder.kinds().count("started") == 4  # nothing handed out once the task failed
    assert recorder.stopped


@pytest.mark.anyio
async def test_rejected_results_exhaust_the_apps_retries(tmp_path: Path) -> None:
    # The app's max_retries is 2: after 3 FAILURE verdicts the requestor hands nothing out.
    with pytest.raises(TaskFailed, match=r"cannot finish.*task_outputs is empty"):
        await run_task(
            APP,
            params=parts({"name": "r", "text": "r", "reject": True}),
            providers=1,
            max_attempts=10,
            in_process=True,
            work_dir=tmp_path,
        )


@pytest.mark.anyio
async def test_awaiting_data_is_verified_again_after_another_success(tmp_path: Path) -> None:
    recorder = Recorder()
    markers = tmp_path / "markers"
    markers.mkdir()
    result = await run_task(
        APP,
        params=parts(
            {"name": "waiter", "text": "w", "await_once": str(markers)},
            {"name": "other", "text": "o"},
            {"name": "third", "text": "t"},
        ),
        providers=1,  # parts are handed out, computed and verified in order
        in_process=True,
        work_dir=tmp_path / "work",
        reporter=recorder,
    )
    assert texts(result) == {"waiter.txt": "W", "other.txt": "O", "third.txt": "T"}
    # Re-queued: verified again right after the next success, before the third part starts.
    assert [kind for kind in recorder.kinds() if kind != "start"] == [
        "started", "awaiting", "started", "verified", "verified", "started", "verified",
    ]  # fmt: skip
    assert (result.subtasks, result.parts, result.failures) == (3, 3, ())


@pytest.mark.anyio
async def test_data_that_never_comes_fails_the_task(tmp_path: Path) -> None:
    with pytest.raises(TaskFailed, match="still await data"):
        await run_task(
            APP,
            params=parts({"name": "w", "text": "w", "await_always": True}),
            providers=1,
            in_process=True,
            work_dir=tmp_path,
        )


@pytest.mark.anyio
async def test_bad_params_refused_by_create_task(tmp_path: Path) -> None:
    with pytest.raises(TaskFailed, match="CreateTask refused"):
        await run_task(
            "examples.mandelbrot",
            params={"size": "big"},
            in_process=True,
            work_dir=tmp_path,
        )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"providers": 0}, "providers must be at least 1"),
        ({"subtask_timeout": 0}, "subtask_timeout must be positive"),
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"max_subtasks": -1}, "max_subtasks must not be negative"),
        ({"inputs": ["/nonexistent/file"]}, "does not exist"),
    ],
)
async def test_bad_arguments(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await run_task(APP, in_process=True, work_dir=tmp_path, **options)


@pytest.mark.anyio
async def test_inputs_with_one_name_are_refused(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.txt").write_text(folder)
    with pytest.raises(ValueError, match="same file name"):
        await run_task(
            APP,
            inputs=[tmp_path / "a" / "same.txt", tmp_path / "b" / "same.txt"],
            in_process=True,
            work_dir=tmp_path / "work",
        )


@pytest.mark.anyio
@pytest.mark.parametrize("in_process", [True, False])
async def test_unknown_module_is_refused_before_anything_starts(
    tmp_path: Path, in_process: bool
) -> None:
    with pytest.raises(ValueError, match="cannot import module 'no_such_app'"):
        await run_task("no_such_app", in_process=in_process, work_dir=tmp_path / "work")
    assert not (tmp_path / "work").exists()


@pytest.mark.anyio
async def test_requestor_process_that_cannot_start(tmp_path: Path) -> None:
    # The app imports here, but its process dies at once (here: no interpreter).
    with pytest.raises(TaskFailed, match=r"requestor did not start: .*exited with code 1"):
        await run_task(APP, work_dir=tmp_path, python="/bin/false")


@pytest.mark.anyio
@pytest.mark.slow
async def test_provider_killed_mid_compute_is_recomputed_elsewhere(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    pid_file = markers / "a.pid"

    def kill_when_computing() -> None:
        os.kill(wait_for_pid(pid_file), signal.SIGKILL)

    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, kill_when_computing)
        result = await run_task(
            APP,
            params=parts(
                {"name": "a", "text": "first", "slow_once": str(markers)},
                {"name": "b", "text": "second"},
            ),
            providers=2,
            work_dir=tmp_path / "work",
        )
    assert texts(result) == {"a.txt": "FIRST", "b.txt": "SECOND"}
    assert (result.parts, result.subtasks, result.retries) == (2, 3, 1)
    [failure] = result.failures
    assert "killed by SIGKILL during Compute" in failure.reason
    # Recomputed elsewhere: the killed node verified nothing; two other nodes did.
    assert result.status is not None
    nodes = result.status.nodes
    assert nodes[failure.node_id].subtasks.get("success", 0) == 0
    successes = {node: s.subtasks.get("success", 0) for node, s in nodes.items()}
    assert sum(successes.values()) == 2


@pytest.mark.anyio
@pytest.mark.slow
async def test_subtask_timeout_kills_the_provider(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    result = await run_task(
        APP,
        params=parts({"name": "a", "text": "late", "slow_once": str(markers)}),
        providers=1,
        subtask_timeout=1.0,
        work_dir=tmp_path / "work",
    )
    assert texts(result) == {"a.txt": "LATE"}
    [failure] = result.failures
    assert "timed out after 1 s" in failure.reason
    hung = int((markers / "a.pid").read_text())
    assert not psutil.pid_exists(hung) or psutil.Process(hung).status() == psutil.STATUS_ZOMBIE


def test_plain_reporter_lines() -> None:
    import io

    stream = io.StringIO()
    reporter = PlainReporter(stream)
    stats = Stats()
    reporter.start(stats, "task-1", "/work")
    stats.parts, stats.running, stats.failures = 2, 1, 1
    reporter.event("failed", "0123456789abcdef", "boom")
    lines = stream.getvalue().splitlines()
    assert "task task-1 created (work dir /work)" in lines[0]
    assert lines[1].endswith("subtask 01234567 failed: boom (2 verified, 1 running, 1 failed)")


@pytest.mark.anyio
@pytest.mark.parametrize("in_process", [True, False])
async def test_resources_are_shipped_to_the_provider(tmp_path: Path, in_process: bool) -> None:
    # In processes, the slot's provider started ahead (before the resources were
    # known) computes it: it reads subtask_inputs in Compute.
    source = tmp_path / "in.txt"
    source.write_text("shipped")
    result = await run_task(
        APP,
        params=parts({"name": "r", "resource": "in.txt"}),
        inputs=[source],
        providers=1,
        in_process=in_process,
        work_dir=tmp_path / "work",
    )
    assert texts(result) == {"r.txt": "SHIPPED"}
    [node] = (tmp_path / "work" / "providers").iterdir()
    assert (node / result.task_id / "subtask_inputs" / "in.txt").read_text() == "shipped"


@pytest.mark.anyio
async def test_verify_calls_never_overlap(tmp_path: Path) -> None:
    from tests.apps import runner_app

    runner_app.MAX_VERIFYING = 0
    await run_task(
        APP,
        params=parts(*({"name": f"p{i}", "text": "t", "verify_sleep": 0.05} for i in range(6))),
        providers=4,
        in_process=True,
        work_dir=tmp_path,
    )
    assert runner_app.MAX_VERIFYING == 1


@pytest.mark.anyio
async def test_a_chatty_provider_does_not_block_and_its_output_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_APP_SAY", "said while importing")
    # 256 KiB on stdout: far more than a pipe holds if nobody reads it.
    result = await run_task(
        APP,
        params=parts({"name": "c", "text": "c", "print_kb": 256}),
        providers=1,
        subtask_timeout=15,
        max_attempts=1,
        work_dir=tmp_path / "work",
    )
    assert texts(result) == {"c.txt": "C"}
    logs = [p for p in (tmp_path / "work" / "logs").iterdir() if p.name != "requestor.log"]
    [log] = logs
    text = log.read_text()
    assert text.count("x" * 1023 + "\n") == 256
    assert text.startswith("said while importing\n")  # printed before "serving on"


@pytest.mark.anyio
async def test_rich_reporter_through_a_run(tmp_path: Path) -> None:
    import io

    from golem_apps.runner import RichReporter

    stream = io.StringIO()
    with pytest.raises(TaskFailed):
        await run_task(
            APP,
            params=parts({"name": "ok", "text": "x"}, {"name": "bad", "fail": True}),
            providers=2,
            max_attempts=1,
            in_process=True,
            work_dir=tmp_path,
            reporter=RichReporter(stream),
        )
    text = stream.getvalue()
    assert "created (work dir" in text
    assert "failed: compute failed: RuntimeError: part bad asked to fail" in text


def requestor_of(runner: psutil.Process) -> psutil.Process:
    """The runner's requestor child (the role comes before the port, at the end)."""
    [requestor] = [
        p for p in runner.children(recursive=True) if command_line(p)[-2:-1] == ["requestor"]
    ]
    return requestor


def file_bytes(result: RunResult) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in result.output_files}


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_killed_requestor_is_restarted_on_its_work_dir_and_the_task_finishes(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    specs = [{"name": "a", "text": "first", "gate": str(gate)}]
    specs += [{"name": n, "text": f"text {n}"} for n in "bcd"]
    killed: list[int] = []

    def kill_requestor_while_a_computes() -> None:
        # a.go is touched whatever happens here: without it a's provider waits at
        # its gate, and the run (which the test's finally waits for) never ends.
        try:
            deadline = time.monotonic() + WAIT_LIMIT
            while not (gate / "a.started").exists():
                if time.monotonic() > deadline:
                    return
                time.sleep(0.01)
            requestor = requestor_of(psutil.Process())
            requestor.kill()
            # Dead once a zombie, or gone: the runner may reap it between two looks
            # (status() then raises). psutil's wait would reap it first.
            with contextlib.suppress(psutil.NoSuchProcess):
                while requestor.is_running() and requestor.status() != psutil.STATUS_ZOMBIE:
                    time.sleep(0.01)
            killed.append(requestor.pid)
        finally:
            (gate / "a.go").touch()  # a's result now reaches a dead requestor

    killer = threading.Thread(target=kill_requestor_while_a_computes)
    killer.start()
    recorder = Recorder()
    try:
        result = await run_task(
            APP, params=parts(*specs), providers=2, work_dir=tmp_path / "work", reporter=recorder
        )
    finally:
        (gate / "a.go").touch()
        await anyio.to_thread.run_sync(killer.join)
    assert len(killed) == 1
    assert result.requestor_restarts == 1
    assert ("restarted", "requestor", "was killed by SIGKILL; restarted on its work dir") in (
        recorder.node_events
    )
    assert (result.parts, result.failures) == (4, ())
    # The same task undisturbed (its gate open from the start) gives the same bytes.
    undisturbed = await run_task(
        APP, params=parts(*specs), providers=2, work_dir=tmp_path / "undisturbed"
    )
    assert file_bytes(result) == file_bytes(undisturbed)
    assert file_bytes(result) == {
        "a.txt": b"FIRST", "b.txt": b"TEXT B", "c.txt": b"TEXT C", "d.txt": b"TEXT D",
    }  # fmt: skip
    assert undisturbed.requestor_restarts == 0


@pytest.mark.anyio
async def test_outputs_that_cannot_be_copied_say_where_they_are(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(
        TaskFailed, match=r"cannot copy the outputs to .*\(they are in .*task_outputs\)"
    ):
        await run_task(
            APP,
            params=parts({"name": "x", "text": "x"}),
            providers=1,
            in_process=True,
            out=tmp_path / "a-file" / "out",  # under a file: no folder can be made there
            work_dir=tmp_path / "work",
        )


@pytest.mark.anyio
async def test_a_provider_exiting_non_zero_after_compute_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_APP_FAIL_EXIT", "1")
    with pytest.raises(TaskFailed, match="provider exited with code 1 after Compute"):
        await run_task(APP, params=parts({"text": "x"}), max_attempts=1, work_dir=tmp_path)


class StatusRecorder(Reporter):
    """Keeps the statuses the runner passes on, and the counts the bar would show."""

    def __init__(self) -> None:
        self.statuses: list[Any] = []
        self.counts: list[str] = []
        self.stats = Stats()

    def start(self, stats: Stats, task_id: str, work_dir: str) -> None:
        self.stats = stats

    def status(self, status: Any) -> None:
        self.statuses.append(status)
        self.counts.append(self.stats.counts())


@pytest.mark.anyio
@pytest.mark.parametrize("in_process", [True, False])
async def test_the_status_comes_over_the_wire_never_from_the_status_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_process: bool
) -> None:
    # No status.json at all (in-process; a child's engine writes one, which nobody reads).
    monkeypatch.setattr("golem_apps.engine._status.write_task_status", lambda *args: None)
    recorder = StatusRecorder()
    result = await run_task(
        APP,
        params=parts(*({"name": f"p{i}", "text": f"t{i}"} for i in range(4))),
        providers=2,
        in_process=in_process,
        work_dir=tmp_path / "work",
        reporter=recorder,
    )
    assert result.status is not None and result.status.state == "finished"
    assert result.status.parts["total"] == result.status.parts["done"] == 4
    assert recorder.statuses and all(s.parts["total"] == 4 for s in recorder.statuses)
    assert recorder.counts[0].endswith("/4") and recorder.counts[-1] == "4/4"
    if in_process:
        assert not list((tmp_path / "work").rglob("status.json"))


def settled_count(work_dir: Path) -> int:
    """Subtasks with a verdict so far, from the runner's journal (a test may read it)."""
    path = work_dir / "runner" / "subtasks.jsonl"
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return 0
    return sum('"step": "settled"' in line and '"verified": true' in line for line in lines)


@pytest.mark.anyio
@pytest.mark.slow
async def test_mandelbrot_survives_its_requestor_killed_three_times(tmp_path: Path) -> None:
    # Killed as the 3rd, 7th and 11th results are verified: whatever it was doing
    # (a Verify, a merge, a NextSubtask in flight), it is restarted on its work dir.
    params = {"size": 64, "tiles": 4, "max_iter": 60}
    work_dir = tmp_path / "work"
    kills: list[int] = []
    done = threading.Event()

    def kill_at_thresholds() -> None:
        for threshold in (3, 7, 11):
            while settled_count(work_dir) < threshold:
                if done.wait(0.005):
                    return
            try:
                requestor_of(psutil.Process()).kill()
            except (ValueError, psutil.Error):
                continue  # between two requestors: this threshold passes
            kills.append(threshold)

    killer = threading.Thread(target=kill_at_thresholds)
    killer.start()
    try:
        result = await run_task(
            "examples.mandelbrot", params=params, providers=3, work_dir=work_dir
        )
    finally:
        done.set()
        await anyio.to_thread.run_sync(killer.join)
    assert kills and result.requestor_restarts == len(kills)
    undisturbed = await run_task(
        "examples.mandelbrot", params=params, providers=3, work_dir=tmp_path / "undisturbed"
    )
    assert undisturbed.requestor_restarts == 0
    assert file_bytes(result) == file_bytes(undisturbed)
    assert list(file_bytes(result)) == ["mandelbrot.png"]
