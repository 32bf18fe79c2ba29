"""The runner's providers on a real Dask cluster: ``dask scheduler`` and ``dask worker`` processes.

One cluster serves the whole module (starting one takes seconds); each test
asks for the workers it needs first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from golem_apps import TaskFailed
from golem_apps.run import main
from golem_apps.runner import Reporter, RunResult, run_task
from golem_apps.runner import _dask as dask_backend

from .dask_cluster import ROOT, DaskCluster, DaskWorker
from .test_faults import gated, killed_and_left, stop_all
from .test_faults import wait_until as wait_for_runner
from .test_foreign_app import command as foreign_command
from .test_foreign_app import stubs  # noqa: F401  # the fixture

MANDELBROT = {"size": 96, "tiles": 4, "max_iter": 64}
#: Safety bound on waiting for something the test caused (not a timing assertion).
WAIT_LIMIT = 60.0
#: Safety bound on one run: a run that hangs fails the test instead of the suite.
RUN_LIMIT = 180.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    folder = tmp_path_factory.mktemp("dask")
    # held_mandelbrot's providers wait while this file names their worker's folder.
    os.environ["HELD_MANDELBROT_FILE"] = str(folder / "hold")
    started = DaskCluster(folder)
    try:
        yield started
    finally:
        started.close()
        del os.environ["HELD_MANDELBROT_FILE"]


@pytest.fixture(scope="module")
def local_png(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The picture of the local runner (providers in-process), to compare with."""
    out = tmp_path_factory.mktemp("local")
    result = anyio.run(
        lambda: run_task("examples.mandelbrot", params=MANDELBROT, in_process=True, out=out)
    )
    return result.output_files[0].read_bytes()


class Recorder(Reporter):
    """Which node each subtask started on, and which Dask worker each node is."""

    def __init__(self) -> None:
        self.started: dict[str, str] = {}
        self.order: list[str] = []
        self.workers: dict[str, str] = {}
        self.progress_reports: list[tuple[str, float]] = []

    def event(self, kind: str, subtask_id: str, detail: str = "") -> None:
        if kind == "started":
            self.started[subtask_id] = detail.removeprefix("on ")
        self.order.append(f"{kind} {subtask_id}")

    def node_event(self, kind: str, node_id: str, detail: str = "") -> None:
        if kind == "joined":
            self.workers[node_id] = detail.removeprefix("Dask worker ")
        self.order.append(f"{kind} {node_id}")

    def progress(self, node_id: str, subtask_id: str, fraction: float, message: str) -> None:
        self.progress_reports.append((subtask_id, fraction))


async def run_on(
    cluster: DaskCluster, module: str | None, tmp_path: Path, **options: Any
) -> RunResult:
    options = {"work_dir": tmp_path / "work", "out": tmp_path / "out", **options}
    with anyio.fail_after(RUN_LIMIT):
        return await run_task(module, cluster=cluster.address, **options)


def wait_until(condition: Any, what: str, limit: float = WAIT_LIMIT) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def no_providers_left(workers: list[DaskWorker], limit: float = WAIT_LIMIT) -> None:
    wait_until(lambda: not any(w.providers() for w in workers), "providers still running", limit)


@pytest.mark.anyio
async def test_mandelbrot_on_the_cluster_is_the_local_picture(
    cluster: DaskCluster, local_png: bytes, tmp_path: Path
) -> None:
    workers = cluster.ensure(2)
    recorder = Recorder()
    result = await run_on(
        cluster, "examples.mandelbrot", tmp_path, params=MANDELBROT, reporter=recorder
    )
    assert result.output_files[0].read_bytes() == local_png
    assert result.parts == 16 and not result.failures
    # Each worker is one node with an id of its own, and both computed.
    assert sorted(recorder.workers.values()) == sorted(w.address for w in workers)
    assert set(recorder.started.values()) == set(recorder.workers)
    assert result.status is not None and set(result.status.nodes) == set(recorder.workers)
    # Nothing of the run is left on the workers.
    for worker in workers:
        assert not list(worker.local_directory.rglob("golem_apps/*"))


@pytest.mark.anyio
async def test_a_worker_killed_mid_subtask_is_replaced_by_another(
    cluster: DaskCluster, local_png: bytes, tmp_path: Path
) -> None:
    survivor, victim = cluster.ensure(2)
    hold = Path(os.environ["HELD_MANDELBROT_FILE"])
    pid_file = Path(f"{hold}.pid")
    pid_file.unlink(missing_ok=True)  # noqa: ASYNC240  # instant, before the run
    hold.write_text(str(victim.local_directory.resolve()))  # noqa: ASYNC240

    orphans: list[psutil.Process] = []

    def kill_when_held() -> None:
        wait_until(pid_file.exists, "no provider was held on the victim")
        orphans.extend(cluster.kill(victim))  # SIGKILL, mid-subtask: its provider is waiting

    killer = threading.Thread(target=kill_when_held)
    killer.start()
    recorder = Recorder()
    try:
        result = await run_on(
            cluster, "tests.apps.held_mandelbrot", tmp_path, params=MANDELBROT, reporter=recorder
        )
    finally:
        killer.join()
        hold.unlink()  # noqa: ASYNC240
    assert result.output_files[0].read_bytes() == local_png
    victim_node = next(n for n, a in recorder.workers.items() if a == victim.address)
    assert [f.node_id for f in result.failures] == [victim_node]
    assert "left the cluster" in result.failures[0].reason
    # The part was computed again on the survivor; the victim's node got nothing after.
    assert recorder.order.index(f"left {victim_node}") > 0
    later = recorder.order[recorder.order.index(f"left {victim_node}") :]
    assert not any(
        recorder.started[entry.split()[1]] == victim_node
        for entry in later
        if entry.startswith("started ")
    )
    assert result.parts == 16
    no_providers_left([survivor])
    # The victim's provider died with it (the runner's process code arranges that).
    assert orphans
    _, alive = psutil.wait_procs(orphans, timeout=10)
    assert alive == []


def _copies_by_part(result: RunResult, recorder: Recorder) -> dict[str, list[str]]:
    # voting's parts are slices with distinct sums: a result's sum names its part.
    assert result.work_dir is not None
    outputs = next((result.work_dir / "requestor").glob("*/subtask_outputs"))
    by_part: dict[str, list[str]] = {}
    for folder in outputs.iterdir():
        value = (folder / "sum.txt").read_text().strip()
        by_part.setdefault(value, []).append(recorder.started[folder.name])
    return by_part


@pytest.mark.anyio
async def test_voting_copies_run_on_distinct_workers_one_joining_later(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    cluster.ensure(2)
    recorder = Recorder()

    def join_once_started() -> None:
        # Redundancy 3 needs a third node: a worker that joins once subtasks run.
        wait_until(lambda: recorder.started, "no subtask started")
        cluster.start_worker()

    joining = threading.Thread(target=join_once_started)
    joining.start()
    try:
        result = await run_on(
            cluster, "examples.voting", tmp_path, out=None,
            params={"parts": 6, "n": 6000}, reporter=recorder,
        )  # fmt: skip
    finally:
        joining.join()
    assert result.output_files[0].read_text() == f"{sum(k * k for k in range(6000))}\n"
    assert len(set(recorder.workers.values())) == 3
    [late] = [
        node for node, address in recorder.workers.items() if address == cluster.workers[-1].address
    ]
    assert recorder.order.index(f"joined {late}") > min(
        i for i, entry in enumerate(recorder.order) if entry.startswith("started ")
    )
    assert late in recorder.started.values()  # the late worker computed
    by_part = _copies_by_part(result, recorder)
    assert len(by_part) == 6
    for nodes in by_part.values():
        assert len(nodes) == 3
        assert len({recorder.workers[node] for node in nodes}) == 3  # distinct workers
    cluster.ensure(2)


@pytest.mark.anyio
async def test_a_banned_worker_gets_no_more_subtasks(cluster: DaskCluster, tmp_path: Path) -> None:
    cluster.ensure(4)
    recorder = Recorder()
    # The first worker (node "provider1-...") returns wrong sums: outvoted, then banned.
    result = await run_on(
        cluster, "examples.voting", tmp_path, out=None,
        params={"parts": 6, "n": 6000, "cheat_slot": 1}, reporter=recorder,
    )  # fmt: skip
    assert result.output_files[0].read_text() == f"{sum(k * k for k in range(6000))}\n"
    assert result.status is not None
    cheater = next(node for node in recorder.workers if node.startswith("provider1-"))
    assert list(result.status.bans) == [cheater]
    # After its ban the cheater's worker got nothing more.
    ban = recorder.order.index(f"banned {cheater}")
    assert not any(
        recorder.started[entry.split()[1]] == cheater
        for entry in recorder.order[ban:]
        if entry.startswith("started ")
    )
    cluster.ensure(2)


@pytest.mark.anyio
async def test_a_shared_resource_goes_once_to_each_worker_and_big_files_in_chunks(
    cluster: DaskCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers = cluster.ensure(2)
    monkeypatch.setattr(dask_backend, "CHUNK_SIZE", 64 * 1024)
    monkeypatch.setattr(dask_backend, "INLINE_LIMIT", 1024)
    sent: list[tuple[str, str]] = []
    send = dask_backend.DaskMachines._send

    async def counting_send(self: Any, worker: Any, path: Path) -> None:
        sent.append((worker.address, path.name))
        await send(self, worker, path)

    monkeypatch.setattr(dask_backend.DaskMachines, "_send", counting_send)
    shared = tmp_path / "shared.txt"
    text = "".join(f"line {i} of the shared resource\n" for i in range(10_000))  # ~300 KB
    shared.write_text(text)
    parts = [{"name": f"p{i}", "resource": "shared.txt"} for i in range(6)]
    recorder = Recorder()
    result = await run_on(
        cluster, "tests.apps.runner_app", tmp_path, params={"parts": parts},
        inputs=[shared], reporter=recorder,
    )  # fmt: skip
    assert sorted(p.name for p in result.output_files) == [f"p{i}.txt" for i in range(6)]
    for path in result.output_files:
        assert path.read_text() == text.upper()  # each result came back in 5 chunks
    used = {recorder.workers[node] for node in recorder.started.values()}
    assert used == {w.address for w in workers}
    assert sorted(sent) == sorted((address, "shared.txt") for address in used)


@pytest.mark.anyio
async def test_a_timed_out_subtask_stops_its_provider_on_the_worker(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    workers = cluster.ensure(2)
    with pytest.raises(TaskFailed, match="timed out"):
        await run_on(
            cluster, "tests.apps.runner_app", tmp_path,
            params={"parts": [{"name": "slow", "sleep": 600}]},
            subtask_timeout=1.0, max_attempts=1,
        )  # fmt: skip
    # Killed by the runner's stop, not at the end of its 600 s (a bound far from both).
    no_providers_left(workers, limit=30.0)


@pytest.mark.anyio
async def test_progress_reports_come_back_from_the_workers(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    cluster.ensure(2)
    recorder = Recorder()
    result = await run_on(
        cluster, "tests.apps.progress_app", tmp_path, params={"parts": 2, "steps": 3, "pause": 0.2},
        reporter=recorder,
    )  # fmt: skip
    assert result.parts == 2
    fractions = {
        sid: [f for s, f in recorder.progress_reports if s == sid] for sid in recorder.started
    }
    assert all(values and values[-1] == pytest.approx(1.0) for values in fractions.values())


@pytest.mark.anyio
@pytest.mark.parametrize("as_file", [False, True])
async def test_a_single_file_app_is_uploaded_to_the_workers(
    cluster: DaskCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_file: bool
) -> None:
    cluster.ensure(2)
    app = tmp_path / "app_folder"
    app.mkdir()
    # A new name each time: an uploaded file stays in the worker's directory.
    name = f"solo_{uuid.uuid4().hex[:8]}"
    (app / f"{name}.py").write_text(
        "from golem_apps import Provider, Requestor\n"
        "requestor = Requestor('solo', image='x', tag='1')\n"
        "provider = Provider()\n"
        "@requestor.task\n"
        "def split(task):\n"
        "    return [{'i': i} for i in range(4)]\n"
        "@provider.compute\n"
        "def compute(ctx):\n"
        "    out = ctx.subtask_dir / f\"{ctx.params['i']}.txt\"\n"
        "    out.write_text('solo')\n"
        "    return out\n"
    )
    # The runner (and its requestor) find it by its path, or in the current
    # directory; the workers, whose current directory is elsewhere, only by the upload.
    if as_file:
        spec = str(app / f"{name}.py")
    else:
        spec = name
        monkeypatch.chdir(app)
        monkeypatch.syspath_prepend(str(app))
    result = await run_on(cluster, spec, tmp_path)
    assert sorted(p.name for p in result.output_files) == ["0.txt", "1.txt", "2.txt", "3.txt"]


def test_the_command_starts_a_local_cluster(local_png: bytes, tmp_path: Path) -> None:
    # A child process: LocalCluster leaves multiprocessing's resource tracker
    # running in the process that started it, until that process ends.
    done = subprocess.run(
        [
            sys.executable, "-m", "golem_apps.run", "examples.mandelbrot", "--cluster", "local:2",
            "--params", json.dumps(MANDELBROT), "--out", str(tmp_path / "out"),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_LIMIT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "mandelbrot.png").read_bytes() == local_png
    assert "nodes:          2" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.anyio
async def test_a_cluster_without_workers_fails_the_run(
    cluster: DaskCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster.ensure(0)
    monkeypatch.setattr(dask_backend, "NO_WORKER_TIMEOUT", 1.0)
    try:
        with pytest.raises(TaskFailed, match="the Dask cluster has had no worker for 1 s"):
            await run_on(cluster, "examples.mandelbrot", tmp_path, params=MANDELBROT)
    finally:
        cluster.ensure(2)


@pytest.mark.anyio
async def test_an_unreachable_scheduler_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dask_backend, "CONNECT_TIMEOUT", 1.0)
    with pytest.raises(
        TaskFailed, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"
    ):
        await run_task("examples.mandelbrot", cluster="tcp://127.0.0.1:9", work_dir=tmp_path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cluster", "nowhere"], "--cluster must be tcp://HOST:PORT or local:N, got 'nowhere'"),
        (["--cluster", "local:0"], "--cluster local:N needs a number of workers N >= 1"),
        (["--cluster", "local:2", "--providers", "2"], "providers and cluster exclude each other"),
    ],
)
def test_bad_cluster_options_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["examples.mandelbrot", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.anyio
async def test_a_foreign_apps_provider_command_runs_on_the_workers(
    cluster: DaskCluster,
    stubs: Path,  # noqa: F811  # the imported fixture
    tmp_path: Path,
) -> None:
    workers = cluster.ensure(2)
    recorder = Recorder()
    numbers = list(range(1, 7))
    result = await run_on(
        cluster, None, tmp_path, requestor_cmd=foreign_command(stubs),
        provider_cmd=foreign_command(stubs), params={"numbers": numbers}, reporter=recorder,
    )  # fmt: skip
    assert (tmp_path / "out" / "total.txt").read_text() == f"{sum(n * n for n in numbers)}\n"
    assert (result.parts, result.subtasks, result.failures) == (6, 6, ())
    assert {recorder.workers[node] for node in recorder.started.values()} == {
        w.address for w in workers
    }


def running(marker: str) -> list[psutil.Process]:
    """This process's descendants with ``marker`` in their command line, zombies apart."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if marker in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.mark.anyio
async def test_a_requestor_still_starting_when_the_cluster_fails_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The requestor starts while the runner connects to the cluster: a cluster
    # that fails first must not leave a requestor behind that never served.
    monkeypatch.setattr(dask_backend, "CONNECT_TIMEOUT", 1.0)
    marker = f"never-serves-{uuid.uuid4().hex}"
    never = f"{sys.executable} -c 'import time; time.sleep(60)' {marker}"
    with (
        anyio.fail_after(RUN_LIMIT),
        pytest.raises(
            TaskFailed, match=r"^cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"
        ),
    ):
        await run_task(
            requestor_cmd=never, provider_cmd=never, cluster="tcp://127.0.0.1:9",
            work_dir=tmp_path,
        )  # fmt: skip
    assert running(marker) == []


def test_a_requestor_that_fails_to_start_ends_a_local_cluster_run_with_one_error(
    tmp_path: Path,
) -> None:
    # The LocalCluster starts meanwhile, and is stopped: one line, no traceback.
    fails = f"{sys.executable} -c 'import sys; print(\"cannot\"); sys.exit(3)'"
    done = subprocess.run(
        [
            sys.executable, "-m", "golem_apps.run", "--cluster", "local:1",
            "--requestor-cmd", fails, "--provider-cmd", fails,
            "--work-dir", str(tmp_path / "work"),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_LIMIT,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "the requestor did not start: requestor exited with code 3 before serving: cannot" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


LOCAL_SESSIONS = """
import asyncio, os, psutil
from golem_apps.runner import Reporter
from golem_apps.runner._dask import dask_machines

async def main():
    async with dask_machines("local:2", app="examples.mandelbrot", provider_command=None,
                             log_level="WARNING", run_id="sessions", reporter=Reporter()) as found:
        workers = {w.split(":")[-1] for w in found.addresses()}
        for child in psutil.Process().children(recursive=True):  # forked by a fork server
            if any(c.laddr.port and str(c.laddr.port) in workers
                   for c in child.net_connections("tcp") if c.status == "LISTEN"):
                print("worker", os.getsid(child.pid) == child.pid)
    print("runner", os.getsid(0) == os.getpid())

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_a_local_clusters_workers_get_sessions_of_their_own(tmp_path: Path) -> None:
    # As the runner's other children: a Ctrl-C reaches the runner only, and
    # each worker gets a CPU share of its own (Linux's autogroups).
    script = tmp_path / "sessions.py"
    script.write_text(LOCAL_SESSIONS)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True,
        timeout=RUN_LIMIT, start_new_session=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split("\n")) == ["", "runner False", "worker True", "worker True"]


@pytest.mark.slow
def test_a_killed_runner_leaves_no_process_of_its_local_cluster_behind(tmp_path: Path) -> None:
    # The workers are forked by multiprocessing's fork server, not the runner:
    # the fork server, the workers and their providers all end with the runner.
    gate = tmp_path / "gate"
    gate.mkdir()
    runner = subprocess.Popen(
        [sys.executable, "-m", "golem_apps.run", "tests.apps.runner_app",
         "--params", json.dumps(gated(gate, "a", "b")), "--cluster", "local:2",
         "--work-dir", str(tmp_path / "work")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    children: list[psutil.Process] = []
    try:
        wait_for_runner(
            runner,
            lambda: (gate / "a.started").exists() and (gate / "b.started").exists(),
            "both providers computing",
        )
        children = psutil.Process(runner.pid).children(recursive=True)
        servers = [
            child for child in children
            if child.ppid() == runner.pid and "multiprocessing.forkserver" in child.cmdline()[-1]
        ]  # fmt: skip
        assert len(servers) == 1
        workers = [child for child in children if child.ppid() == servers[0].pid]
        assert len(workers) == 2
        providers = [
            child for child in children
            if child.ppid() in {w.pid for w in workers} and "golem_apps.serve" in child.cmdline()
        ]  # fmt: skip
        assert len(providers) == 2  # (each worker also runs the reaper of its providers)
        assert killed_and_left(runner, children) == []
    finally:
        stop_all(runner, children)
