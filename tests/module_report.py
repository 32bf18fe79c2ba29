"""A server command run under a report of what it imported: the start-up path tests' tool."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Runs ``python -m <argv[1]> <argv[2:]>`` and, as the process ends (serve ends it
#: with os._exit), writes every module then in sys.modules to stderr. sys.modules, not
#: ``-X importtime``: that misses what importlib.import_module loads (golem_apps'
#: lazily loaded names).
_REPORT_MODULES = """
import os, runpy, sys
exit_now = os._exit
def report_and_exit(code):
    sys.stderr.write("modules: " + " ".join(sorted(sys.modules)) + "\\n")
    sys.stderr.flush()
    exit_now(code)
os._exit = report_and_exit
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def free_port() -> int:
    """A port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ModuleReport:
    """What the process said as it ended (filled in when the ``with`` block is left)."""

    def __init__(self) -> None:
        self.code: int | None = None
        self.stderr = ""

    def modules(self) -> set[str]:
        """The module names the process reported as it exited (it must have exited with 0)."""
        assert self.code == 0, self.stderr[-2000:]
        lines = [line for line in self.stderr.splitlines() if line.startswith("modules: ")]
        assert len(lines) == 1, self.stderr[-2000:]
        return set(lines[0].split()[1:])


@asynccontextmanager
async def reporting_modules(python: str, *args: str) -> AsyncIterator[ModuleReport]:
    """``python -m ARGS`` runs while the block talks to it; then it must exit (within 30 s)."""
    proc = await asyncio.create_subprocess_exec(
        python, "-c", _REPORT_MODULES, *args,
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    stderr_read = asyncio.ensure_future(proc.stderr.read())  # the pipe must not fill up
    report = ModuleReport()
    try:
        yield report
        report.code = await asyncio.wait_for(proc.wait(), 30)
        report.stderr = (await stderr_read).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
