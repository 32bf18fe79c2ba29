"""Commands as a node runs images: a prefix, the role and port appended, {work_dir} replaced."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

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


def test_a_command_that_speaks_as_it_serves_is_polled_at_the_nodes_pace() -> None:
    speaks = StartupTimes()
    for hinted in (True, False, True):  # one found serving by a fine poll just before its line
        speaks.record(0.1, hinted)
    assert speaks.hints_trusted()
    assert list(itertools.islice(speaks.delays(), 50)) == [NODE_POLL_INTERVAL] * 50
    early = StartupTimes()  # prints before it serves, or never: keeps the fine polls
    for hinted in (True, False, False):
        early.record(0.1, hinted)
    assert not early.hints_trusted()
    assert next(early.delays()) == pytest.approx(0.07)


class _Patient(StartupTimes):
    """Polls once a minute: only a hint brings a poll forward."""

    def __init__(self) -> None:
        super().__init__()
        self.hinted: list[bool] = []

    def delays(self) -> Iterator[float]:
        yield from itertools.repeat(60.0)

    def record(self, seconds: float, hinted: bool = False) -> None:
        self.hinted.append(hinted)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _python(code: str) -> ServerCommand:
    return ServerCommand((sys.executable, "-c", code))


@pytest.mark.anyio
async def test_what_a_child_prints_as_it_serves_brings_the_health_poll_forward(
    tmp_path: Path,
) -> None:
    from golem_apps import ProviderClient

    command = ServerCommand.serve(sys.executable, "tests.apps.runner_app:provider", "WARNING")
    log_path = tmp_path / "provider.log"
    child = await ServerProcess.start(command, "provider", tmp_path, log_path, child_env())
    times = _Patient()
    try:
        with anyio.fail_after(30):  # a minute without the hint
            client = await child.connect(ProviderClient, startup=times)
        client.close()
    finally:
        await child.stop()
    assert times.hinted == [True]
    assert "provider serving on" in log_path.read_text()  # stdout still lands in the log


@pytest.mark.anyio
async def test_a_childs_output_is_in_its_log_once_it_has_exited(tmp_path: Path) -> None:
    log_path = tmp_path / "child.log"
    said = "import sys; print('to stdout'); print('to stderr', file=sys.stderr); sys.exit(2)"
    child = await ServerProcess.start(_python(said), "provider", tmp_path, log_path, child_env())
    try:
        assert await child.wait_exit(30) == 2
        assert log_path.read_text().splitlines() == ["to stdout", "to stderr"]  # in order
    finally:
        await child.stop()


@pytest.mark.anyio
async def test_a_helper_that_keeps_the_childs_stdout_does_not_hold_up_its_stop(
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "child.log"
    # The helper leaves the child's group (a session of its own): killing the group spares
    # it, and it holds the child's stdout for a minute.
    code = (
        "import subprocess, sys; helper = subprocess.Popen([sys.executable, '-c', "
        "'import time; time.sleep(60)'], start_new_session=True); print(helper.pid)"
    )
    child = await ServerProcess.start(_python(code), "provider", tmp_path, log_path, child_env())
    helper = None
    try:
        assert await child.wait_exit(30) == 0
        helper = int(log_path.read_text())  # its output is in the log, though the pipe is open
        await child.stop()
        assert _alive(helper)  # stop() returned while the helper lives: it did not wait for it
    finally:
        if helper is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(helper, signal.SIGKILL)
        await child.stop()
