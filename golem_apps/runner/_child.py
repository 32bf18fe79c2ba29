"""A child process watched through a pidfd and reaped once its exit has settled (Linux).

Why not asyncio's subprocess: Python 3.11's default child watcher gives each
child a thread that blocks in ``waitpid()`` and so reaps the child the very
moment it exits. Reaping a process flushes its ``/proc`` entries
(``proc_flush_pid``); when the child's last thread is still flushing its own
on the other CPU (a provider lists ``/proc/<pid>/task`` as it exits, see
``golem_apps.serve``), the reaping thread spins in ``shrink_dcache_parent``
until it is done. Measured here: 0.5-20 ms of CPU per provider that way (once
94 ms), 0.03 ms when the zombie is reaped 20 ms later. On 2 cores that was a
quarter of the runner's CPU.

So a :class:`Child` learns that its process ended from a pidfd (readable on
exit, watched by the event loop: no thread per child) and reads the exit
status with ``waitid(WNOWAIT)``, which leaves the zombie in place: its pid
stays the child's, so killing its process group afterwards can never hit a
stranger. :meth:`Child.release` hands the zombie to one reaper thread per
process, which reaps it :data:`SETTLE` seconds later.

:func:`spawn` falls back to asyncio's subprocess where there are no pidfds
(not Linux, or a kernel before 5.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

#: How long a zombie is left before it is reaped: its exit has settled by then.
SETTLE = 0.05


class ChildProcess(Protocol):
    """What the runner needs of a child process."""

    @property
    def pid(self) -> int:
        """Its process id (its process group's too: it leads a session of its own)."""

    @property
    def returncode(self) -> int | None:
        """Its exit code (negative: the signal that killed it), None while it runs."""

    async def wait(self) -> int:
        """Wait until it has exited; its exit code."""

    def kill(self) -> None:
        """SIGKILL it, and its process group, unless it was released."""

    def release(self) -> None:
        """Done with it (it has exited): reap it. Idempotent."""


def _exit_code(result: os.waitid_result) -> int:
    # As subprocess reports it: the exit status, or minus the signal that ended it.
    if result.si_code == os.CLD_EXITED:
        return result.si_status
    return -result.si_status


class Child:
    """A child process whose exit the event loop learns from a pidfd; see the module docstring."""

    def __init__(self, popen: subprocess.Popen[bytes], pidfd: int) -> None:
        self._popen = popen
        self._pidfd = pidfd
        self._code: int | None = None
        self._released = False
        #: The loop whose reader watches the pidfd, and the future it completes.
        self._exit: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None

    @property
    def pid(self) -> int:
        """Its process id."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """Its exit code once it has exited (asked of the kernel, the zombie left in place)."""
        if self._code is None and not self._released:
            try:
                result = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # someone else reaped it: as asyncio reports that
                self._code = 255
            else:
                if result is not None:
                    self._code = _exit_code(result)
        return self._code

    def _readable(self) -> None:
        assert self._exit is not None
        loop, future = self._exit
        loop.remove_reader(self._pidfd)
        if not future.done():
            future.set_result(None)

    async def wait(self) -> int:
        """Wait until it has exited (the loop watches its pidfd); its exit code."""
        while (code := self.returncode) is None:
            loop = asyncio.get_running_loop()
            if self._exit is None or self._exit[0] is not loop or self._exit[1].done():
                self._unwatch()
                self._exit = (loop, loop.create_future())
                loop.add_reader(self._pidfd, self._readable)
            # Not the future itself: a cancelled waiter leaves it for the others.
            await asyncio.wait([self._exit[1]])
        return code

    def _unwatch(self) -> None:
        if self._exit is not None:
            loop, future = self._exit
            if not future.done() and not loop.is_closed():
                loop.remove_reader(self._pidfd)
            self._exit = None

    def kill(self) -> None:
        """SIGKILL its process group (or it alone, if it has none of its own)."""
        if self._released:
            return  # reaped, or about to be: its pid may be another process's
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def release(self) -> None:
        """Hand the exited child to the reaper thread. Call it from the loop that waited."""
        if self._released:
            return
        self.returncode  # noqa: B018 - the code read while the zombie is there
        self._released = True
        self._unwatch()
        _zombies.add(self)

    def _reap(self) -> bool:
        """Reap it (in the reaper thread); False if it still runs (released too early)."""
        try:
            result = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            result = None  # reaped already
        else:
            if result is None:
                return False
        if self._code is None:
            self._code = 255 if result is None else _exit_code(result)
        os.close(self._pidfd)
        # subprocess must not think it still runs (a ResourceWarning, a waitpid of a stranger).
        self._popen.returncode = self._code
        return True


class _ZombieReaper:
    """One thread per process that reaps released children once their exit has settled."""

    def __init__(self) -> None:
        self._due: deque[tuple[float, Child]] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, child: Child) -> None:
        with self._ready:
            self._due.append((time.monotonic() + SETTLE, child))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="golem_apps child reaper", daemon=True
                )
                self._thread.start()
            self._ready.notify()

    def pending(self) -> int:
        """How many released children are not reaped yet."""
        with self._ready:
            return len(self._due)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._due:
                    self._ready.wait()
                when, child = self._due[0]
                delay = when - time.monotonic()
                if delay > 0:
                    self._ready.wait(delay)
                    continue
                self._due.popleft()
            if not child._reap():
                self.add(child)  # released while it ran: look again later


_zombies = _ZombieReaper()


class _AsyncioChild:
    """The fallback: asyncio's subprocess (which reaps its child itself)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._released = False

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def wait(self) -> int:
        return await self._process.wait()

    def kill(self) -> None:
        if self._released:
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            if self._process.returncode is None:
                self._process.kill()

    def release(self) -> None:
        self._released = True


_pidfds_work: bool | None = None


def _pidfds() -> bool:
    """Whether this system has pidfds and ``waitid(P_PIDFD)`` (Linux 5.4+). Checked once."""
    global _pidfds_work
    if _pidfds_work is None:
        _pidfds_work = False
        if hasattr(os, "pidfd_open") and hasattr(os, "P_PIDFD"):
            try:
                own = os.pidfd_open(os.getpid())
            except OSError:
                return False
            try:
                os.waitid(os.P_PIDFD, own, os.WEXITED | os.WNOHANG)
            except ChildProcessError:  # understood: this process is no child of itself
                _pidfds_work = True
            except OSError:
                pass  # EINVAL: no P_PIDFD before Linux 5.4
            finally:
                os.close(own)
    return _pidfds_work


async def spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    log: int,
    env: Mapping[str, str],
    pass_fds: Sequence[int] = (),
) -> ChildProcess:
    """Start ``argv`` in ``cwd`` in a session of its own, stdout and stderr into fd ``log``,
    the file descriptors ``pass_fds`` inherited.

    OSError when it cannot be started.
    """
    options = {
        "stdin": subprocess.DEVNULL, "stdout": log, "stderr": log, "cwd": cwd, "env": env,
        "start_new_session": True, "pass_fds": tuple(pass_fds),
    }  # fmt: skip
    if _pidfds():
        # In the loop's thread, as asyncio does it (a vfork: the loop waits for the exec only).
        popen = subprocess.Popen(argv, **options)  # type: ignore[call-overload]  # noqa: ASYNC220
        try:
            pidfd = os.pidfd_open(popen.pid)
        except OSError:  # out of file descriptors, say: no child to watch, then
            popen.kill()
            popen.wait()
            raise
        return Child(popen, pidfd)
    process = await asyncio.create_subprocess_exec(*argv, **options)  # type: ignore[arg-type]
    return _AsyncioChild(process)
