"""Child processes: ``python -m golem_apps.serve`` for the requestor and each provider.

Each child runs in its own session, so a Ctrl-C on the terminal reaches the
runner only: the runner then aborts the task over the wire and kills every
child itself (its whole process group, in case the app started helpers).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.buffered import BufferedByteReceiveStream

from .._exceptions import ComputeFailed
from ._workdir import tail

#: How long a child may take to print its "serving on" line.
START_TIMEOUT = 30.0
#: Longest first line read from a child's stdout.
MAX_LINE = 4096
#: How long a provider may take to exit after answering Compute.
PROVIDER_EXIT_TIMEOUT = 10.0
#: How long the rest of a stopped child's output may take to reach its log.
DRAIN_TIMEOUT = 2.0
#: How long the requestor may take to exit after Shutdown before it is killed (as a node waits).
REQUESTOR_EXIT_TIMEOUT = 5.0


@dataclass
class ServeProcess:
    """A running ``golem_apps.serve`` child and the address it serves on."""

    process: Process
    host: str
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid


def serve_command(python: str, module: str, role: str, work_dir: Path, log_level: str) -> list[str]:
    """The command line of one ``golem_apps.serve`` child (port 0: it picks a free one)."""
    return [
        python, "-m", "golem_apps.serve", module, role, "0",
        "--work-dir", str(work_dir), "--log-level", log_level,
        "--tracebacks",  # the runner shows the failing handler's traceback (_tracebacks.py)
    ]  # fmt: skip


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: the current directory importable, as for ``python -m``."""
    env = dict(os.environ if base is None else base)
    existing = env.get("PYTHONPATH")
    cwd = str(Path.cwd())
    env["PYTHONPATH"] = os.pathsep.join([cwd, existing] if existing else [cwd])
    env["PYTHONUNBUFFERED"] = "1"  # the app's prints reach its log as they happen
    return env


async def stop(process: Process) -> None:
    """Kill the child's process group unless it has exited, and reap it."""
    if process.returncode is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()
    with anyio.CancelScope(shield=True):
        await process.wait()


async def kill(process: Process) -> None:
    """Stop the child (idempotent) and close its pipes."""
    await stop(process)
    with anyio.CancelScope(shield=True):
        await process.aclose()


async def _read_address(
    stdout: BufferedByteReceiveStream, process: Process, role: str, log_path: Path
) -> tuple[str, int]:
    marker = f"{role} serving on "
    with anyio.move_on_after(START_TIMEOUT):
        while True:
            try:
                raw = await stdout.receive_until(b"\n", MAX_LINE)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound):
                break
            line = raw.decode(errors="replace")
            if line.startswith(marker):
                host, _, port = line[len(marker) :].strip().rpartition(":")
                return host, int(port)
            # The app printed something while importing: it belongs in its log.
            await anyio.to_thread.run_sync(_append, log_path, raw + b"\n")
        await process.wait()
        why = await anyio.to_thread.run_sync(tail, log_path)
        raise ComputeFailed(
            f"{role} exited with code {process.returncode} before serving"
            + (f": {why}" if why else "")
        )
    raise ComputeFailed(f"{role} did not start serving within {START_TIMEOUT:g} s")


async def _drain(stdout: ByteReceiveStream, log_path: Path, done: anyio.Event) -> None:
    # Keep reading what the app prints, so that a chatty app never blocks on a full pipe.
    try:
        async with await anyio.open_file(log_path, "ab") as log:
            async for chunk in stdout:
                await log.write(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
    finally:
        done.set()


def _open_log(path: Path) -> Any:
    return path.open("ab")


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


@asynccontextmanager
async def serve_process(
    command: list[str], role: str, log_path: Path, env: Mapping[str, str]
) -> AsyncIterator[ServeProcess]:
    """Start a serve child, wait for its "serving on" line, and kill it when the block ends.

    Its stderr and later stdout go to ``log_path``. ComputeFailed (with the last
    line of its log) when it exits or stays silent instead.
    """
    log = await anyio.to_thread.run_sync(_open_log, log_path)
    try:
        process = await anyio.open_process(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=dict(env),
            start_new_session=True,
        )
    finally:
        log.close()
    try:
        assert process.stdout is not None
        stdout = BufferedByteReceiveStream(process.stdout)
        drained: anyio.Event | None = None
        async with anyio.create_task_group() as tg:
            try:
                host, port = await _read_address(stdout, process, role, log_path)
                drained = anyio.Event()
                tg.start_soon(_drain, stdout, log_path, drained)
                yield ServeProcess(process, host, port, log_path)
            finally:
                await stop(process)
                if drained is not None:
                    # Let the drain log what is still in the pipe; a helper the app
                    # left holding the pipe open must not keep us here.
                    with anyio.CancelScope(shield=True), anyio.move_on_after(DRAIN_TIMEOUT):
                        await drained.wait()
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The drain never fails: the one error is the block's own; raise it as it was.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        await kill(process)


async def wait_exit(process: Process, timeout: float) -> int | None:
    """The child's exit code, or None if it is still running after ``timeout`` s."""
    with anyio.move_on_after(timeout):
        return await process.wait()
    return None
