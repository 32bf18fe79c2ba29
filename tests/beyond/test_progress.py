"""Provider progress and heartbeats: ctx.progress, the ProviderProgress stream, the runner."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from golem_apps import ComputeContext
from golem_apps.runner import Reporter, run_task

APP = "tests.apps.progress_app"


class Seen(Reporter):
    """Keeps the runner's progress and node events."""

    def __init__(self) -> None:
        self.started: dict[str, str] = {}  # subtask id -> its node, from "started"
        self.reports: list[tuple[str, str, float, str]] = []
        self.nodes: list[tuple[str, str, str]] = []

    def event(self, kind: str, subtask_id: str, detail: str = "") -> None:
        if kind == "started":
            self.started[subtask_id] = detail.removeprefix("on ")

    def progress(self, node_id: str, subtask_id: str, fraction: float, message: str) -> None:
        self.reports.append((node_id, subtask_id, fraction, message))

    def node_event(self, kind: str, node_id: str, detail: str = "") -> None:
        self.nodes.append((kind, node_id, detail))


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, "half", True, None])
def test_progress_refuses_a_bad_fraction(tmp_path: Path, bad: object) -> None:
    ctx = ComputeContext("t", "s", {}, tmp_path)
    with pytest.raises(ValueError, match="fraction"):
        ctx.progress(bad)  # type: ignore[arg-type]


def test_progress_reaches_the_sink_and_is_optional(tmp_path: Path) -> None:
    got: list[tuple[float, str]] = []
    ctx = ComputeContext("t", "s", {}, tmp_path, _progress=lambda f, m: got.append((f, m)))
    ctx.progress(1, "all")
    ctx.progress(0.5)
    assert got == [(1.0, "all"), (0.5, "")]
    ComputeContext("t", "s", {}, tmp_path).progress(0.5)  # no watcher: nothing happens


@pytest.mark.anyio
async def test_progress_reaches_the_runner(tmp_path: Path) -> None:
    seen = Seen()
    result = await run_task(
        APP,
        params={"parts": 2, "steps": 4, "pause": 0.05},
        providers=2,
        in_process=True,
        work_dir=tmp_path / "work",
        reporter=seen,
    )
    assert result.parts == 2
    reports = seen.reports
    assert reports
    for node_id, subtask_id, fraction, message in reports:
        assert seen.started[subtask_id] == node_id  # the provider computing that subtask
        assert message == f"step {round(fraction * 4)}/4"
    # Each subtask's reports arrive in order and reach 100%.
    for subtask_id in seen.started:
        fractions = [f for _, sid, f, _ in reports if sid == subtask_id]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0


@pytest.mark.anyio
@pytest.mark.slow
async def test_progress_reaches_the_runner_from_provider_processes(
    tmp_path: Path, python: str
) -> None:
    seen = Seen()
    result = await run_task(
        APP,
        params={"parts": 2, "steps": 3, "pause": 0.1},
        providers=2,
        work_dir=tmp_path / "work",
        reporter=seen,
        python=python,
    )
    assert result.parts == 2
    messages = {message for _, _, _, message in seen.reports}
    assert "step 3/3" in messages
    assert {sid for _, sid, _, _ in seen.reports} == set(seen.started)


@pytest.mark.anyio
async def test_a_provider_that_hangs_without_heartbeat_is_replaced(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    seen = Seen()
    result = await run_task(
        APP,
        params={"parts": 2, "hang_once": str(markers)},
        providers=2,
        in_process=True,
        work_dir=tmp_path / "work",
        subtask_timeout=60,  # far away: the heartbeat notices first
        heartbeat_timeout=0.5,
        reporter=seen,
    )
    assert result.parts == 2
    assert sorted(p.name for p in markers.iterdir()) == ["0.hung", "1.hung"]
    hung = {path.read_text() for path in markers.iterdir()}
    # Both hung subtasks failed for their silence, not for the subtask timeout...
    assert {f.subtask_id for f in result.failures} == hung
    for failure in result.failures:
        assert failure.reason.startswith("no heartbeat for 0.5 s")
        assert "25% about to hang" in failure.reason
    # ...were flagged, and their parts were computed again by other providers.
    stalled = [node for kind, node, _ in seen.nodes if kind == "stalled"]
    assert sorted(stalled) == sorted(seen.started[sid] for sid in hung)
    assert result.subtasks == 4


@pytest.mark.anyio
async def test_a_provider_that_keeps_beating_is_left_alone(tmp_path: Path) -> None:
    result = await run_task(
        APP,
        params={"parts": 1, "steps": 10, "pause": 0.05},
        providers=1,
        in_process=True,
        work_dir=tmp_path / "work",
        heartbeat_timeout=2.0,  # 40 times the gap between two beats
    )
    assert (result.parts, result.subtasks, result.failures) == (1, 1, ())


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_hung_provider_process_is_killed_and_replaced(tmp_path: Path, python: str) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    seen = Seen()
    result = await run_task(
        APP,
        params={"parts": 1, "hang_once": str(markers)},
        providers=1,
        work_dir=tmp_path / "work",
        subtask_timeout=60,
        heartbeat_timeout=1.0,
        reporter=seen,
        python=python,
    )
    [failure] = result.failures
    assert failure.reason.startswith("no heartbeat for 1 s")
    assert [kind for kind, _, _ in seen.nodes] == ["stalled"]
    assert (result.parts, result.subtasks) == (1, 2)


def test_plain_progress_lines_are_few_but_show_the_end() -> None:
    import io

    from golem_apps.runner import PlainReporter

    stream = io.StringIO()
    reporter = PlainReporter(stream)
    for step in range(1, 101):
        reporter.progress("node-1", "subtask-1", step / 100, f"step {step}")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("subtask subtask- on node-1: 1% step 1")
    assert lines[-1].endswith("100% step 100")
    assert len(lines) < 10


def test_the_cli_refuses_a_bad_heartbeat_timeout(python: str) -> None:
    import subprocess

    from ..conftest import ROOT

    done = subprocess.run(
        [python, "-m", "golem_apps.run", APP, "--heartbeat-timeout", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--heartbeat-timeout" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_rich_reporter_shows_a_bar_per_running_provider() -> None:
    import io

    from golem_apps.runner import RichReporter, Stats

    stream = io.StringIO()
    reporter = RichReporter(stream)
    reporter.start(Stats(), "task-1", "/work")
    reporter.progress("provider1-ab", "subtask-1", 0.4, "40 of 100")
    reporter.progress("provider1-ab", "subtask-1", 0.8, "80 of 100")
    assert len(reporter._providers) == 1
    reporter.node_event("stalled", "provider2-cd", "no heartbeat for 1 s")
    reporter.event("verified", "subtask-1")
    assert reporter._providers == {}  # its bar went with the subtask
    reporter.stop()
    assert "node provider2-cd stalled: no heartbeat for 1 s" in stream.getvalue()


class _Truncated:
    """A request whose bytes are a truncated field."""

    def SerializeToString(self) -> bytes:
        return b"\x0a\x05ab"


@pytest.mark.anyio
async def test_an_undecodable_watch_request_is_invalid_argument(tmp_path: Path) -> None:
    from grpclib.client import UnaryStreamMethod
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError

    from golem_apps import ProviderClient, serve_provider
    from golem_apps._wire import ProgressUpdate
    from tests.apps import sample

    async with serve_provider(sample.provider, work_dir=tmp_path) as server:
        async with await ProviderClient.connect(port=server.port) as client:
            path = "/golem_apps.ProviderProgress/Watch"
            watch = UnaryStreamMethod(client.channel, path, _Truncated, ProgressUpdate)
            with pytest.raises(GRPCError) as error:
                await watch(_Truncated())
            assert error.value.status is Status.INVALID_ARGUMENT
            assert "WatchRequest" in (error.value.message or "")
            # The provider still serves its one request.
            assert await client.compute("t", "s1", {"text": "hi"}) == "s1/result.txt"
        assert await server.wait() == 0
