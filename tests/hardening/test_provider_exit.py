"""A provider process exits within 2 s of Shutdown or SIGTERM and leaves no child process
behind: whatever its compute does (ignores its cancellation flag, swallows its cancellation,
blocks its event loop), Shutdown is answered; only a lifespan that cannot end needs the
hard deadline."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest
from grpclib.exceptions import GRPCError, StreamTerminatedError

from golem_apps import ProviderClient
from golem_apps.serve import PROVIDER_GRACE_SECONDS

from ..conftest import ROOT

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

#: Generous bound on the exit, grace period included.
EXIT_BOUND = PROVIDER_GRACE_SECONDS + 10


@contextlib.contextmanager
def provider_process(
    python: str, work: Path, app: str = "tests.hardening.apps"
) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [python, "-m", "golem_apps.serve", app, "provider", "0",
         "--work-dir", str(work)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


async def read_line(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    with anyio.fail_after(20):
        while True:
            line = await anyio.to_thread.run_sync(proc.stdout.readline)
            if not line:
                raise AssertionError(f"provider ended before printing {prefix!r}")
            if line.startswith(prefix):
                return line.strip()


async def wait_exit(proc: subprocess.Popen[str]) -> tuple[int, float]:
    start = time.monotonic()
    with anyio.fail_after(EXIT_BOUND):
        while proc.poll() is None:
            await anyio.sleep(0.05)
    return proc.returncode, time.monotonic() - start


def alive(pid: int) -> bool:
    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return False
    return bool(status != psutil.STATUS_ZOMBIE)


def descendants(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


#: Where the time from Shutdown (or SIGTERM) to the exit must stay, hard deadline included.
EXIT_WITHIN = 2.0


async def run_case(python: str, tmp_path: Path, app: str, mode: str, stop: str) -> None:
    work = tmp_path / "task"
    work.mkdir()
    with provider_process(python, work, f"tests.hardening.apps:{app}") as proc:
        line = await read_line(proc, "provider serving on ")
        port = int(line.rsplit(":", 1)[1])
        client = await ProviderClient.connect("127.0.0.1", port, timeout=15)
        outcome: list[BaseException | str] = []
        async with anyio.create_task_group() as group:

            async def compute() -> None:
                try:
                    outcome.append(await client.compute("t", "s1", {"mode": mode}))
                except (GRPCError, StreamTerminatedError, ConnectionError) as exc:
                    outcome.append(exc)

            group.start_soon(compute)
            marker = await read_line(proc, "children" if mode == "children" else "computing")
            kids = descendants(proc.pid)
            if mode == "children":  # a python child, sh, and sh's two sleeps
                with anyio.fail_after(10):
                    while len(kids) < 4:
                        await anyio.sleep(0.02)
                        kids = descendants(proc.pid)
            if stop == "shutdown":
                shutdown = await ProviderClient.connect("127.0.0.1", port, timeout=15)
                async with shutdown:
                    stopped = time.monotonic()
                    with anyio.fail_after(EXIT_WITHIN):  # answered, the app's loop blocked or not
                        await shutdown.shutdown()
            else:
                stopped = time.monotonic()
                proc.send_signal(signal.SIGTERM)
            code, _ = await wait_exit(proc)
            took = time.monotonic() - stopped
            print(f"{app}/{mode}/{stop}: exit {code} after {took:.2f} s")
        client.close()
        assert code != 0, "a cancelled computation must exit non-zero"
        assert took < EXIT_WITHIN, f"exited {took:.2f} s after {stop}"
        assert outcome and not isinstance(outcome[0], str), outcome
        assert proc.stderr is not None
        hard_exit = "did not stop within" in proc.stderr.read()
        # Only a lifespan whose exit cannot run (its loop blocked) needs the hard deadline.
        assert hard_exit == (app == "lifespan_provider"), f"hard exit: {hard_exit}"
        with anyio.fail_after(5):
            while any(alive(pid) for pid in kids):
                await anyio.sleep(0.05)
        assert marker


CASES = [
    *(("provider", mode) for mode in ("cooperative", "ignore_cancel", "children")),
    *(("async_provider", mode) for mode in ("stubborn_async", "block_loop")),
    ("lifespan_provider", "block_loop"),
]


@pytest.mark.parametrize("stop", ["shutdown", "sigterm"])
@pytest.mark.parametrize(("app", "mode"), CASES)
async def test_provider_exits_and_leaves_no_children(
    python: str, tmp_path: Path, app: str, mode: str, stop: str
) -> None:
    await run_case(python, tmp_path, app, mode, stop)


async def test_sigterm_while_idle_exits(python: str, tmp_path: Path) -> None:
    work = tmp_path / "task"
    work.mkdir()
    with provider_process(python, work) as proc:
        await read_line(proc, "provider serving on ")
        proc.send_signal(signal.SIGTERM)
        code, _ = await wait_exit(proc)
        assert code in (0, 1)  # an exit of its own, not death by the signal


def test_grace_period_is_what_the_bound_assumes() -> None:
    assert 0 < PROVIDER_GRACE_SECONDS <= 5
    assert sys.platform.startswith("linux")
