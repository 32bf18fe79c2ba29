"""File descriptors exhausted (more connections than the fd limit): the server logs it at most
once a second with a count, no traceback, and serves again once connections close."""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import anyio
import pytest

from golem_apps import ProviderClient, RequestorClient
from golem_apps.server._listen import ACCEPT_ERROR_INTERVAL

from ..conftest import ROOT

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

#: The server's fd limit: a few dozen connections exhaust it.
FD_LIMIT = 64
CONNECTIONS = 160
HOLD_SECONDS = 2.5


def low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def flood(port: int) -> list[socket.socket]:
    """Open as many connections as the kernel lets us (the server accepts only some)."""
    opened = []
    for _ in range(CONNECTIONS):
        # OSError: the listen backlog is full, the server is not accepting.
        with contextlib.suppress(OSError):
            opened.append(socket.create_connection(("127.0.0.1", port), timeout=0.2))
    return opened


@pytest.mark.parametrize("role", ["requestor", "provider"])
async def test_fd_exhaustion_is_logged_once_a_second_with_a_count(
    tmp_path: Path, role: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
        [sys.executable, "-m", "golem_apps.serve", "tests.apps.sample", role, "0",
         "--work-dir", str(work)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=low_fd_limit,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = await anyio.to_thread.run_sync(proc.stdout.readline)
        port = int(line.rsplit(":", 1)[1])
        opened = await anyio.to_thread.run_sync(flood, port)
        await anyio.sleep(HOLD_SECONDS)
        for sock in opened:
            sock.close()
        # Accepting again (asyncio retries a second after each failure): a real call works.
        client_type = RequestorClient if role == "requestor" else ProviderClient
        async with await client_type.connect(port=port, timeout=15) as client:
            if isinstance(client, ProviderClient):
                assert await client.compute("t", "s1", {"text": "a"}) == "s1/result.txt"
            else:
                await client.create_task("t", {"texts": ["a"]})
                await client.shutdown()
        assert proc.wait(timeout=15) == 0
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    reports = [line for line in stderr.splitlines() if "cannot accept connections" in line]
    assert "Traceback" not in stderr, stderr[:2000]
    assert reports, stderr[:2000]
    assert "Too many open files" in reports[0]
    counts = [int(line.split("(")[1].split()[0]) for line in reports]
    assert sum(counts) > len(reports)  # several failures per report: counted, not each logged
    # At most once a second while serving; what is left when the server stops is
    # reported at once (the last line, then), not lost.
    serving = [line for line in reports if line.endswith("accepting again in a second")]
    assert reports[: len(serving)] == serving
    assert len(reports) - len(serving) <= 1 and reports[-1].endswith(("second", "the server stops"))
    times = [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in reports]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
    assert all(gap >= ACCEPT_ERROR_INTERVAL - 0.01 for gap in gaps[: len(serving) - 1]), gaps
