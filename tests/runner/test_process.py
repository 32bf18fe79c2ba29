"""Commands as a node runs images: a prefix, the role and port appended, {work_dir} replaced;
golem_apps' own servers started on a socket already listening."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import pytest

from golem_apps import _client
from golem_apps._client import ProviderClient
from golem_apps._exceptions import ComputeFailed
from golem_apps.runner._process import (
    NODE_POLL_INTERVAL,
    ServerCommand,
    ServerProcess,
    StartupTimes,
    child_env,
)


def test_the_role_and_port_are_appended_and_the_work_dir_replaced(tmp_path: Path) -> None:
    command = ServerCommand.parse(f"{sys.executable} app.py --data '{{work_dir}}/in put' -v")
    assert command.argv("provider", 50006, tmp_path) == [
        sys.executable, "app.py", "--data", f"{tmp_path}/in put", "-v", "provider", "50006",
    ]  # fmt: skip


def test_the_module_form_is_golem_apps_serve_on_the_work_dir(tmp_path: Path) -> None:
    command = ServerCommand.serve("python3", "examples.mandelbrot:requestor", "INFO")
    assert command.argv("requestor", 50005, tmp_path) == [
        "python3", "-m", "golem_apps.serve", "examples.mandelbrot:requestor",
        "--work-dir", str(tmp_path), "--log-level", "INFO", "--tracebacks", "requestor", "50005",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "--provider-cmd is empty"),
        ("   ", "--provider-cmd is empty"),
        ("python 'app.py", '--provider-cmd: cannot parse "python \'app.py": No closing quotation'),
        ("no-such-program-here --x", "--provider-cmd: command 'no-such-program-here' not found"),
    ],
)
def test_unusable_commands_are_refused_naming_the_option(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        ServerCommand.parse(text, "--provider-cmd")
    assert str(caught.value).startswith(message)


def test_polls_come_quick_around_the_moment_peers_served_then_at_the_nodes_pace() -> None:
    fresh = list(itertools.islice(StartupTimes().delays(), 60))
    assert fresh[:50] == [StartupTimes.COARSE] * 50  # no history: every 20 ms for a second
    assert fresh[50:] == [NODE_POLL_INTERVAL] * 10
    times = StartupTimes()
    for seconds in (0.1, 0.2, 0.1):
        times.record(seconds)
    delays = list(itertools.islice(times.delays(), 200))
    assert delays[0] == pytest.approx(0.07)  # 0.7 x the median: nothing serves sooner
    fine = delays[1 : delays.index(StartupTimes.COARSE)]
    assert set(fine) == {StartupTimes.FINE}
    assert sum(delays[: len(fine) + 1]) >= 0.13  # fine polls up to 1.3 x the median


@pytest.mark.anyio
async def test_a_command_that_exits_before_serving_says_so_with_its_last_words(
    tmp_path: Path,
) -> None:
    from golem_apps import TaskFailed
    from golem_apps.runner import run_task

    said = f"{sys.executable} -c 'import sys; print(\"no port for me\"); sys.exit(3)'"
    with pytest.raises(TaskFailed) as caught:
        await run_task(requestor_cmd=said, provider_cmd=said, work_dir=tmp_path)
    assert str(caught.value).startswith(
        "the requestor did not start: requestor exited with code 3 before serving: no port for me"
    )


async def _start_provider(spec: str, work_dir: Path) -> ServerProcess:
    (work_dir / "subtask_inputs").mkdir()
    command = ServerCommand.serve(sys.executable, spec, "WARNING")
    return await ServerProcess.start(command, "provider", work_dir, work_dir / "log", child_env())


@pytest.mark.anyio
async def test_golem_apps_servers_start_on_a_listening_socket_and_are_never_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    polls: list[str] = []

    async def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            reply = await unary(*args, **kwargs)
        except Exception as exc:
            polls.append(type(exc).__name__)
            raise
        polls.append("answered")
        return reply

    unary = _client._unary
    monkeypatch.setattr(_client, "_unary", counted)
    child = await _start_provider("tests.apps.runner_app:provider", tmp_path)
    try:
        # Polled at once, as soon as it started: the call waits in the socket's backlog.
        client = await child.connect(ProviderClient, startup=StartupTimes())
        client.close()
    finally:
        await child.stop()
    assert polls == ["answered"]


@pytest.mark.anyio
async def test_a_golem_apps_server_that_exits_before_serving_says_so(tmp_path: Path) -> None:
    child = await _start_provider("no_such_module_here:provider", tmp_path)
    try:
        with pytest.raises(ComputeFailed) as caught:
            await child.connect(ProviderClient)
    finally:
        await child.stop()
    assert str(caught.value) == (
        "provider exited with code 2 before serving: golem_apps.serve: error: cannot import "
        "module 'no_such_module_here': No module named 'no_such_module_here'"
    )
