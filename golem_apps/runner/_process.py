"""Child processes: the requestor and each provider, started from a command as a node starts them.

A node runs an app's image with ``requestor PORT`` or ``provider PORT``
appended to its ENTRYPOINT. The runner does the same with a command prefix
(:class:`ServerCommand`): it picks a free port, appends the role and port,
starts the command in the server's work dir and polls Health until SERVING.
Nothing is read from the child's stdout: stdout and stderr go to its log.

golem_apps' own command (``golem_apps.serve``) gets the port's socket
already bound and listening, passed in (see
:func:`golem_apps.server._listen.inherited`): the first Health call then
waits in its backlog and is answered the moment the server serves, where
polling a port that refuses until then costs each start a few refused
connections and up to a poll's pause (3 % of the runner benchmark's wall).

Each child runs in its own session, so a Ctrl-C on the terminal reaches the
runner only: the runner then aborts the task over the wire and kills every
child itself (its whole process group, in case the app started helpers). If
the runner is killed instead, :mod:`._reaper` kills them.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import shlex
import shutil
import signal
import socket
import statistics
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
from ..server._listen import LISTEN_FD
from ._child import ChildProcess, spawn
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
    """

    #: Pause between polls around the expected moment.
    FINE = 0.005
    #: Pause between polls when there is no history, or past the expected moment.
    COARSE = 0.02

    def __init__(self) -> None:
        self._recent: deque[float] = deque(maxlen=16)

    def record(self, seconds: float) -> None:
        """A server of the command answered SERVING ``seconds`` after it was started."""
        self._recent.append(seconds)

    def delays(self) -> Iterator[float]:
        """The pauses between polls (the first poll goes out at once)."""
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

    def __init__(self, process: ChildProcess, role: str, port: int, log_path: Path) -> None:
        self.process = process
        self.role = role
        self.port = port
        self.log_path = log_path
        self.started = time.monotonic()

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
        # One trip to a worker thread for the blocking steps (port, log file, watchdog).
        port, log, listening = await anyio.to_thread.run_sync(
            _before_spawn, log_path, command.golem_apps
        )
        argv = command.argv(role, port, work_dir)
        fds: tuple[int, ...] = ()
        if listening is not None:
            fds = (listening.fileno(),)
            env = {**env, LISTEN_FD: str(fds[0])}
        try:
            process = await _spawn(argv, work_dir, log, env, fds)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(release_port, port)
            if isinstance(exc, OSError):
                raise ComputeFailed(f"cannot start the {role} ({command}): {exc}") from None
            raise
        finally:
            os.close(log)
            if listening is not None:
                listening.close()  # the child's now: it closes when the child ends
        return cls(process, role, port, log_path)

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
            await wait_serving(
                channel, f"{HOST}:{self.port}", timeout, delays=startup.delays(), check=check_alive
            )
        except _Exited:
            channel.close()
            why = await anyio.to_thread.run_sync(tail, self.log_path)
            raise ComputeFailed(
                f"{self.role} exited with code {self.process.returncode} before serving"
                + (f": {why}" if why else "")
            ) from None
        except (TimeoutError, OSError) as exc:
            channel.close()
            waited = time.monotonic() - started
            raise ComputeFailed(f"{self.role} did not serve within {waited:.0f} s: {exc}") from None
        startup.record(time.monotonic() - self.started)
        return client_type(channel)

    async def wait_exit(self, timeout: float) -> int | None:
        """The child's exit code, or None if it is still running after ``timeout`` s."""
        with anyio.move_on_after(timeout):
            return await self.process.wait()
        return None

    async def stop(self) -> int:
        """Kill the child's process group (what it left running too) and reap it; its exit code.

        Idempotent; shielded: a cancelled run still reaps what it kills.
        """
        self.process.kill()
        with anyio.CancelScope(shield=True):
            code = await self.process.wait()
            try:
                if self.port in _ports_in_use:
                    await anyio.to_thread.run_sync(_after_stop, self.port, self.process.pid)
            finally:
                self.process.release()  # reaped once its exit has settled: see _child.py
        return code


class _Exited(Exception):
    """The child exited while the runner waited for it to serve."""


def listening_socket() -> socket.socket:
    """A TCP socket bound to a port of the kernel's choice on :data:`HOST`, listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, 0))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _before_spawn(log_path: Path, bound: bool) -> tuple[int, int, socket.socket | None]:
    """The port (reserved, or with ``bound`` its listening socket), the opened log (its
    fd); the watchdog started. Blocking."""
    reaper.start()  # the first time: a process start
    listening = listening_socket() if bound else None
    port = free_port() if listening is None else listening.getsockname()[1]
    try:
        return port, os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), listening
    except BaseException:
        release_port(port)
        if listening is not None:
            listening.close()
        raise


def _after_stop(port: int, pgid: int) -> None:
    """The child's port and process group are free again. Blocking."""
    release_port(port)
    reaper.forget(pgid)


async def _spawn(
    argv: Sequence[str], cwd: Path, log: int, env: Mapping[str, str], fds: Sequence[int] = ()
) -> ChildProcess:
    # In a session (a group) of its own; the watchdog finds it (and its own children) by the mark.
    process = await spawn(argv, cwd=cwd, log=log, env=reaper.mark(dict(env)), pass_fds=fds)
    # The group is the child's pid (a new session): the watchdog kills it if we die.
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(reaper.watch, process.pid)
    return process
