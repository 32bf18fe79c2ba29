"""A provider process always exits in bounded time and leaves no child process behind:
Shutdown during Compute, SIGTERM, and a sync compute that ignores its cancellation flag."""

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


async def run_case(python: str, tmp_path: Path, mode: str, stop: str) -> None:
    work = tmp_path / "task"
    work.mkdir()
    app = "tests.hardening.apps"
    if mode in ("stubborn_async", "block_loop"):
        app += ":async_provider"
    with provider_process(python, work, app) as proc:
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
                    await shutdown.shutdown()
            else:
                proc.send_signal(signal.SIGTERM)
            code, took = await wait_exit(proc)
            print(f"{mode}/{stop}: exit {code} after {took:.2f} s")
        client.close()
        assert code != 0, "a cancelled computation must exit non-zero"
        assert outcome and not isinstance(outcome[0], str), outcome
        with anyio.fail_after(5):
            while any(alive(pid) for pid in kids):
                await anyio.sleep(0.05)
        assert marker


CASES = [
    (mode, stop)
    for mode in ("cooperative", "ignore_cancel", "children", "stubborn_async", "block_loop")
    for stop in ("shutdown", "sigterm")
    if (mode, stop) != ("block_loop", "shutdown")  # a blocked loop cannot answer an RPC
]


@pytest.mark.parametrize(("mode", "stop"), CASES)
async def test_provider_exits_and_leaves_no_children(
    python: str, tmp_path: Path, mode: str, stop: str
) -> None:
    await run_case(python, tmp_path, mode, stop)


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
