"""Providers started ahead (SubprocessNodes.warm): taken by the first computes, stopped if not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import psutil
import pytest

from golem_apps.runner._nodes import ComputeJob, SubprocessNodes
from golem_apps.runner._process import ServerCommand, ServerProcess
from golem_apps.runner._workdir import prepare_provider

pytestmark = pytest.mark.anyio

APP = "tests.apps.runner_app"


def providers() -> list[psutil.Process]:
    """This process's provider children (the watchdog process is no provider)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "provider" in child.cmdline():
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


async def serving(nodes: SubprocessNodes, count: int) -> list[psutil.Process]:
    """The provider children once the runner has seen the ``count`` started ahead SERVING.

    Not once they listen: the runner hands each its socket already listening.
    """
    assert len(nodes._warm) == count
    with anyio.fail_after(20):
        for ahead in list(nodes._warm.values()):
            await ahead.starting
    found = providers()
    assert len(found) == count
    return found


def nodes_for(python: str, provider: ServerCommand | None = None) -> SubprocessNodes:
    """Nodes of the test app; its providers through ``golem_apps.serve`` unless given."""
    serve = ServerCommand.serve(python, APP, "WARNING")
    return SubprocessNodes(serve, provider or serve)


def job(task_dir: Path, logs: Path, name: str) -> ComputeJob:
    params = {"name": name, "text": name}
    return ComputeJob("task", f"sub-{name}", params, task_dir, logs / f"sub-{name}.log")


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    logs = tmp_path / "logs"
    logs.mkdir()
    yield prepare_provider(tmp_path, "n1", "task"), prepare_provider(tmp_path, "n2", "task"), logs
    assert providers() == []  # nothing left behind, whatever the test did


async def test_the_first_compute_takes_the_provider_started_ahead(
    python: str, layout: tuple[Path, Path, Path]
) -> None:
    first, _, logs = layout
    nodes = nodes_for(python)
    async with nodes.warm([(first, logs / "n1.log")]):
        [ahead] = await serving(nodes, 1)  # started before any subtask was known
        output = await nodes.compute(job(first, logs, "a"))
        assert (first / output).read_text() == "A"
        # The one started ahead computed it (a one-shot provider exits after its Compute),
        # and no other provider was started for it.
        assert not ahead.is_running() or ahead.status() == psutil.STATUS_ZOMBIE
        assert providers() == []
        # Its log is the subtask's now.
        assert sorted(p.name for p in logs.iterdir()) == ["sub-a.log"]
        # The next compute in that dir starts a provider of its own.
        assert (first / await nodes.compute(job(first, logs, "b"))).read_text() == "B"


async def test_a_provider_that_died_while_waiting_is_replaced_unseen(
    python: str, layout: tuple[Path, Path, Path]
) -> None:
    first, _, logs = layout
    nodes = nodes_for(python)
    async with nodes.warm([(first, logs / "n1.log")]):
        [ahead] = await serving(nodes, 1)  # the runner has seen it SERVING: then it dies
        ahead.kill()
        ahead.wait(10)
        output = await nodes.compute(job(first, logs, "a"))  # no ComputeFailed
        assert (first / output).read_text() == "A"


async def test_providers_not_taken_are_stopped_and_leave_no_log(
    python: str, layout: tuple[Path, Path, Path]
) -> None:
    first, second, logs = layout
    nodes = nodes_for(python)
    async with nodes.warm([(first, logs / "n1.log"), (second, logs / "n2.log")]):
        await serving(nodes, 2)
    assert providers() == []
    assert list(logs.iterdir()) == []
    # Left while still starting (a run that fails at once): stopped too.
    async with nodes.warm([(first, logs / "n1.log")]):
        pass
    # A compute cancelled while its provider still starts takes it down with it.
    async with nodes.warm([(first, logs / "n1.log")]):
        with anyio.move_on_after(0.01):
            await nodes.compute(job(first, logs, "a"))
        assert providers() == []


async def test_another_apps_command_is_not_started_ahead(
    python: str, layout: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _, logs = layout
    started: list[Path] = []
    start = ServerProcess.start

    async def recording_start(command: ServerCommand, role: str, work_dir: Path, *rest: Any) -> Any:
        started.append(work_dir)
        return await start(command, role, work_dir, *rest)

    monkeypatch.setattr(ServerProcess, "start", recording_start)
    # The same app, but as a user's command: the runner knows nothing of what it
    # does while it starts, so it starts it as a node would, once the subtask is known.
    command = ServerCommand.parse(f"{python} -m golem_apps.serve {APP} --work-dir {{work_dir}}")
    nodes = nodes_for(python, command)
    async with nodes.warm([(first, logs / "n1.log")]):
        # A start ahead would have begun by now: its task's first step is this call.
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        assert started == []
        assert (first / await nodes.compute(job(first, logs, "a"))).read_text() == "A"
        assert started == [first]  # the compute's own
