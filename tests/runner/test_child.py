"""Child processes: exit codes from a pidfd, the zombie kept until released, then reaped."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from golem_apps.runner import _child
from golem_apps.runner._child import ChildProcess, spawn

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["pidfd", "asyncio"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both ways a child is watched: a pidfd (Linux), asyncio's subprocess (the fallback)."""
    if request.param == "pidfd":
        if not _child._pidfds():
            pytest.fail("this Linux has no pidfds: the runner's tests expect them")
    else:
        monkeypatch.setattr(_child, "_pidfds_work", False)
    yield request.param


def state(pid: int) -> str | None:
    """The process's state letter (Z: a zombie), None once it is gone (reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


async def start(tmp_path: Path, code: str) -> ChildProcess:
    log = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        return await spawn([sys.executable, "-c", code], cwd=tmp_path, log=log, env=os.environ)
    finally:
        os.close(log)


async def test_the_exit_code_and_the_killing_signal_are_reported(
    tmp_path: Path, backend: str
) -> None:
    exits = await start(tmp_path, "import sys; print('bye'); sys.exit(3)")
    sleeps = await start(tmp_path, "import time; time.sleep(60)")
    try:
        with anyio.fail_after(10):
            assert await exits.wait() == 3
            assert sleeps.returncode is None
            sleeps.kill()
            assert await sleeps.wait() == -signal.SIGKILL
        assert exits.returncode == 3
    finally:
        for child in (exits, sleeps):
            child.kill()
            await child.wait()
            child.release()
    assert (tmp_path / "log").read_text() == "bye\n"  # stdout into the log fd


async def test_an_exit_is_seen_without_waiting(tmp_path: Path, backend: str) -> None:
    # The runner checks returncode between Health polls, awaiting nothing.
    child = await start(tmp_path, "pass")
    try:
        with anyio.fail_after(10):
            while child.returncode is None:
                await anyio.sleep(0.01)
        assert child.returncode == 0
    finally:
        await child.wait()
        child.release()


async def test_the_zombie_keeps_its_pid_until_released_then_is_reaped(tmp_path: Path) -> None:
    # Reaped at once, a child whose exit is still settling costs its reaper
    # milliseconds of kernel CPU (see _child.py); and while the zombie is there its
    # pid (its group's id) cannot go to another process that kill() might hit.
    child = await start(tmp_path, "pass")
    with anyio.fail_after(10):
        assert await child.wait() == 0
    assert state(child.pid) == "Z"
    child.kill()  # its group's leader is a zombie: nobody else is hit, nothing raised
    child.release()
    child.release()  # idempotent
    deadline = time.monotonic() + 10
    while state(child.pid) is not None:
        assert time.monotonic() < deadline, "the released child was never reaped"
        await anyio.sleep(0.01)
    assert child.returncode == 0  # still known once reaped
    child.kill()  # released: its pid may be another process's now, so nothing is sent


async def test_a_child_released_while_it_runs_is_reaped_once_it_exits(tmp_path: Path) -> None:
    child = await start(tmp_path, "import time; time.sleep(0.3)")
    child.release()
    deadline = time.monotonic() + 10
    while state(child.pid) is not None:
        assert time.monotonic() < deadline, "the released child was never reaped"
        await anyio.sleep(0.01)


async def test_a_cancelled_waiter_leaves_the_others_waiting(tmp_path: Path, backend: str) -> None:
    child = await start(tmp_path, "import time; time.sleep(0.5)")
    try:
        first = asyncio.ensure_future(child.wait())
        second = asyncio.ensure_future(child.wait())
        await asyncio.sleep(0.05)
        first.cancel()
        with anyio.fail_after(10):
            assert await second == 0
            assert await child.wait() == 0
        assert first.cancelled()
    finally:
        child.kill()
        await child.wait()
        child.release()


async def test_a_released_child_is_waited_for_in_another_event_loop(tmp_path: Path) -> None:
    # A Dask worker runs each subtask in an event loop of its own: a child waited
    # for in one loop that ended is still reaped (the reaper is a thread).
    async def in_a_loop() -> int:
        child = await start(tmp_path, "pass")
        await child.wait()
        child.release()
        return child.pid

    pid = await anyio.to_thread.run_sync(lambda: anyio.run(in_a_loop))
    deadline = time.monotonic() + 10
    while state(pid) is not None:
        assert time.monotonic() < deadline, "the released child was never reaped"
        await anyio.sleep(0.01)
