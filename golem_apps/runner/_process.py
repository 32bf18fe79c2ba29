"""Child processes: the requestor and each provider, started from a command as a node starts them.

A node runs an app's image with ``requestor PORT`` or ``provider PORT``
appended to its ENTRYPOINT. The runner does the same with a command prefix
(:class:`ServerCommand`): it picks a free port, appends the role and port,
starts the command in the server's work dir and polls Health until SERVING.
stderr goes to the child's log; stdout reaches the log through the runner
(:class:`_Output`), and whatever the child prints before it serves is a hint
that it may serve now: the next Health poll goes out at once. Health SERVING
stays the contract; what the child prints is never parsed.

Each child runs in its own session, so a Ctrl-C on the terminal reaches the
runner only: the runner then aborts the task over the wire and kills every
child itself (its whole process group, in case the app started helpers). If
the runner is killed instead, :mod:`._reaper` kills them.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import logging
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio
from grpclib.client import Channel

from .._client import _Client, wait_serving
from .._exceptions import ComputeFailed
from ._reaper import reaper
from ._workdir import tail

#: How long a child may take to answer Health SERVING (as a node waits).
START_TIMEOUT = 15.0
#: How long a provider may take to exit after answering Compute.
PROVIDER_EXIT_TIMEOUT = 10.0
#: How long the requestor may take to exit after Shutdown before it is killed (as a node waits).
REQUESTOR_EXIT_TIMEOUT = 5.0
#: The placeholder in a command for the server's work dir.
WORK_DIR = "{work_dir}"
#: The address the children serve on and the runner connects to.
HOST = "127.0.0.1"
#: How often a node polls a starting server's Health.
NODE_POLL_INTERVAL = 0.1
#: How long a child's last output may take to reach its log once the child has exited.
OUTPUT_GRACE = 1.0

log = logging.getLogger("golem_apps.runner")
C = TypeVar("C", bound=_Client)


@dataclass(frozen=True)
class ServerCommand:
    """How to start one side of an app: a command prefix, as an image's ENTRYPOINT.

    The runner appends ``requestor PORT`` or ``provider PORT`` and replaces
    ``{work_dir}`` in each word by the server's work dir, which is also its
    current directory.
    """

    prefix: tuple[str, ...]
    golem_apps: bool = False
    """True for the ``golem_apps.serve`` sugar of a MODULE: its extra services are known."""

    @classmethod
    def parse(cls, text: str, option: str = "command") -> ServerCommand:
        """Split a shell-like command line. ValueError names ``option`` when it is unusable."""
        try:
            words = tuple(shlex.split(text))
        except ValueError as exc:
            raise ValueError(f"{option}: cannot parse {text!r}: {exc}") from None
        if not words:
            raise ValueError(f"{option} is empty")
        program = words[0]
        if os.sep not in program and shutil.which(program) is None:
            raise ValueError(f"{option}: command {program!r} not found on PATH")
        return cls(words)

    @classmethod
    def serve(cls, python: str, spec: str, log_level: str) -> ServerCommand:
        """``python -m golem_apps.serve SPEC --work-dir {work_dir}``: the APP form's command."""
        return cls(
            (python, "-m", "golem_apps.serve", spec, "--work-dir", WORK_DIR,
             "--log-level", log_level,
             "--tracebacks"),  # the runner shows the failing handler's traceback (_tracebacks.py)
            golem_apps=True,
        )  # fmt: skip

    def argv(self, role: str, port: int, work_dir: Path) -> list[str]:
        """The full command line for ``role`` on ``port`` in ``work_dir``."""
        words = [word.replace(WORK_DIR, str(work_dir)) for word in self.prefix]
        return [*words, role, str(port)]

    def __str__(self) -> str:
        return shlex.join(self.prefix)


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: the current directory importable, as for ``python -m``.

    Children run in their work dir, so the runner's current directory goes on
    PYTHONPATH: ``python -m myapp`` finds the app it would find here.
    """
    env = dict(os.environ if base is None else base)
    existing = env.get("PYTHONPATH")
    cwd = str(Path.cwd())
    env["PYTHONPATH"] = os.pathsep.join([cwd, existing] if existing else [cwd])
    env["PYTHONUNBUFFERED"] = "1"  # the app's prints reach its log as they happen
    return env


#: Ports handed to children that may still be starting: never hand one out twice.
_ports_in_use: set[int] = set()
#: The same across the golem_apps processes of this machine (other runners, the
#: Dask workers of one host): a lock file per port, locked (flock) while its child
#: lives, so that no other process hands out a port whose child has not bound it
#: yet, whose Health it would then poll. The kernel drops a dead process's locks.
PORT_LOCKS = Path(tempfile.gettempdir()) / "golem_apps-ports"
#: Ports share :data:`PORT_LOCK_FILES` lock files (port modulo the count): a bounded
#: set, made once, instead of a new file (an inode) for each new port. Two ports of
#: one file exclude each other too: the second is skipped, as if taken.
PORT_LOCK_FILES = 4096
_port_locks: dict[int, int] = {}


def _reserve(port: int) -> bool:
    """Lock the port's file for this process; False when another process holds it."""
    try:
        PORT_LOCKS.mkdir(exist_ok=True)
        name = f"bucket-{port % PORT_LOCK_FILES}"
        fd = os.open(PORT_LOCKS / name, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        return True  # no shared folder to lock in: the kernel's pick alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _port_locks[port] = fd
    return True


def free_port() -> int:
    """A port nobody listens on now (the kernel's pick), not given to a live child, reserved.

    Blocking (a lock file): call it in a worker thread. :func:`release_port` gives it back.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((HOST, 0))
            port: int = probe.getsockname()[1]
        if port not in _ports_in_use and _reserve(port):
            _ports_in_use.add(port)
            return port
    raise OSError("no free port")


def release_port(port: int) -> None:
    """The port's child is gone: the port may be handed out again."""
    _ports_in_use.discard(port)
    fd = _port_locks.pop(port, None)
    if fd is not None:
        os.close(fd)


class StartupTimes:
    """How long one command's servers took to answer SERVING: when to poll the next one.

    A node polls Health every 0.1 s; a provider that serves after 0.11 s would
    then wait 0.2 s, on every subtask. The runner polls at once, and then
    often around the moment the last servers of the same command were ready:
    a refused connection costs a fraction of a millisecond, a late poll costs
    the whole gap. After a second it falls back to the node's pace.

    A command whose servers say something as they begin to serve
    (``golem_apps.serve`` prints ``... serving on HOST:PORT``) is polled when it
    speaks: when most of its recent servers answered SERVING on the poll their
    output brought forward, it is polled between hints at the node's pace
    only. (A command that prints earlier, or not at all, is found serving by
    the fine polls: it keeps them.)
    """

    #: Pause between polls around the expected moment.
    FINE = 0.005
    #: Pause between polls when there is no history, or past the expected moment.
    COARSE = 0.02
    #: Servers seen before their hints are trusted.
    HINTED = 3

    def __init__(self) -> None:
        self._recent: deque[float] = deque(maxlen=16)
        self._hinted: deque[bool] = deque(maxlen=16)

    def record(self, seconds: float, hinted: bool = False) -> None:
        """A server of the command answered SERVING ``seconds`` after it was started.

        ``hinted``: on the poll its output brought forward.
        """
        self._recent.append(seconds)
        self._hinted.append(hinted)

    def hints_trusted(self) -> bool:
        """Whether most recent servers answered SERVING on the poll their output brought forward."""
        return len(self._hinted) >= self.HINTED and 2 * sum(self._hinted) > len(self._hinted)

    def delays(self) -> Iterator[float]:
        """The pauses between polls (the first poll goes out at once)."""
        if self.hints_trusted():
            # The hint comes when it serves: polls only in case it does not.
            yield from itertools.repeat(NODE_POLL_INTERVAL)
            return
        if self._recent:
            expected = statistics.median(self._recent)
            yield 0.7 * expected  # nothing serves much sooner than its peers did
            yield from itertools.repeat(self.FINE, int(0.6 * expected / self.FINE) + 1)
        yield from itertools.repeat(self.COARSE, int(1.0 / self.COARSE))
        yield from itertools.repeat(NODE_POLL_INTERVAL)


def describe_exit(code: int | None) -> str:
    """A child's exit status in words."""
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class ServerProcess:
    """A server child started from a :class:`ServerCommand`, on a port the runner chose."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        role: str,
        port: int,
        log_path: Path,
        output: _Output,
    ) -> None:
        self.process = process
        self.role = role
        self.port = port
        self.log_path = log_path
        self.started = time.monotonic()
        self._output = output

    @classmethod
    async def start(
        cls,
        command: ServerCommand,
        role: str,
        work_dir: Path,
        log_path: Path,
        env: Mapping[str, str],
    ) -> ServerProcess:
        """Start ``role`` in ``work_dir``; its stdout and stderr go to ``log_path``.

        ComputeFailed when the command cannot be started.
        """
        # One trip to a worker thread for the blocking steps (lock file, log file, watchdog).
        port, log_fd = await anyio.to_thread.run_sync(_before_spawn, log_path)
        argv = command.argv(role, port, work_dir)
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            process = await _spawn(argv, work_dir, write_end, log_fd, env)
        except BaseException as exc:
            os.close(read_end)
            os.close(log_fd)
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(release_port, port)
            if isinstance(exc, OSError):
                raise ComputeFailed(f"cannot start the {role} ({command}): {exc}") from None
            raise
        finally:
            os.close(write_end)  # the child has it: its exit (and its helpers') is our EOF
        return cls(process, role, port, log_path, _Output(read_end, log_fd))

    async def connect(
        self,
        client_type: type[C],
        timeout: float = START_TIMEOUT,
        startup: StartupTimes | None = None,
    ) -> C:
        """A client once the server's Health says SERVING (polled as ``startup`` suggests).

        ComputeFailed (with the last line of its log) when the child exits or
        does not serve within ``timeout`` seconds.
        """
        channel = Channel(HOST, self.port)
        started = time.monotonic()

        def check_alive() -> None:
            if self.process.returncode is not None:
                raise _Exited()

        try:
            startup = startup or StartupTimes()
            hinted = await wait_serving(
                channel,
                f"{HOST}:{self.port}",
                timeout,
                delays=startup.delays(),
                check=check_alive,
                hint=self._output.said,
            )
        except _Exited:
            channel.close()
            await self._output.finish(OUTPUT_GRACE)  # its last words in the log first
            why = await anyio.to_thread.run_sync(tail, self.log_path)
            raise ComputeFailed(
                f"{self.role} exited with code {self.process.returncode} before serving"
                + (f": {why}" if why else "")
            ) from None
        except (TimeoutError, OSError) as exc:
            channel.close()
            waited = time.monotonic() - started
            raise ComputeFailed(f"{self.role} did not serve within {waited:.0f} s: {exc}") from None
        startup.record(time.monotonic() - self.started, hinted)
        return client_type(channel)

    async def wait_exit(self, timeout: float) -> int | None:
        """The child's exit code, or None if it is still running after ``timeout`` s.

        Once it has exited, its output is in its log (within :data:`OUTPUT_GRACE`).
        """
        with anyio.move_on_after(timeout):
            code = await self.process.wait()
            await self._output.finish(OUTPUT_GRACE)
            return code
        return None

    async def stop(self) -> int:
        """Kill the child's process group (what it left running too) and reap it; its exit code.

        Idempotent; shielded: a cancelled run still reaps what it kills.
        """
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            if self.process.returncode is None:
                self.process.kill()
        with anyio.CancelScope(shield=True):
            code = await self.process.wait()
            await self._output.close(OUTPUT_GRACE)
            if self.port in _ports_in_use:
                await anyio.to_thread.run_sync(_after_stop, self.port, self.process.pid)
        return code


class _Exited(Exception):
    """The child exited while the runner waited for it to serve."""


class _Output:
    """A child's stdout, read from a pipe and appended to its log.

    Each chunk also sets :attr:`said`: a child that prints as it begins to
    serve is polled at once. Writes to the log go to a worker thread (file
    work); the log stays open until the last write is done.
    """

    def __init__(self, read_end: int, log: int) -> None:
        self.said = asyncio.Event()
        """Set when the child printed something (cleared by whoever waits for it)."""
        self._log = log
        self._copying = asyncio.ensure_future(self._copy(read_end))

    async def _copy(self, read_end: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe = os.fdopen(read_end, "rb", buffering=0)
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), pipe
            )
        except BaseException:
            pipe.close()
            raise
        writing: asyncio.Future[None] | None = None
        try:
            while data := await reader.read(_CHUNK):
                self.said.set()
                # Not anyio's worker: this write must end before the log closes, even if
                # the copy is cancelled meanwhile, and asyncio.shield says so plainly.
                writing = loop.run_in_executor(None, _write_all, self._log, data)
                await asyncio.shield(writing)
        finally:
            transport.close()
            if writing is not None and not writing.done():
                await asyncio.wait({writing})

    async def finish(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the end of the output (the child and its helpers gone)."""
        await asyncio.wait({self._copying}, timeout=timeout)

    async def close(self, timeout: float) -> None:
        """Copy what comes within ``timeout`` s, then stop copying and close the log. Idempotent."""
        if self._log < 0:
            return
        await self.finish(timeout)
        if not self._copying.done():
            self._copying.cancel()  # a helper of the child that left its group holds the pipe
            await asyncio.wait({self._copying})
        if not self._copying.cancelled() and self._copying.exception() is not None:
            log.warning("copying a child's output failed: %s", self._copying.exception())
        os.close(self._log)
        self._log = -1


#: The most the runner reads from a child's stdout at once.
_CHUNK = 65536


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _before_spawn(log_path: Path) -> tuple[int, int]:
    """A reserved port and the opened log (its fd); the watchdog started. Blocking."""
    reaper.start()  # the first time: a process start
    port = free_port()
    try:
        return port, os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except BaseException:
        release_port(port)
        raise


def _after_stop(port: int, pgid: int) -> None:
    """The child's port and process group are free again. Blocking."""
    release_port(port)
    reaper.forget(pgid)


async def _spawn(
    argv: Sequence[str], cwd: Path, stdout: int, log: int, env: Mapping[str, str]
) -> asyncio.subprocess.Process:
    # asyncio's (grpclib is asyncio-only), with a session (a group) of its own.
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=log,
        cwd=cwd,
        env=reaper.mark(dict(env)),  # the watchdog finds the child (and its own) by it
        start_new_session=True,
    )
    # The group is the child's pid (a new session): the watchdog kills it if we die.
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(reaper.watch, process.pid)
    return process
