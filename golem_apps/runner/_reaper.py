"""The reaper: no child of the runner outlives it, even when the runner is SIGKILLed.

A killed process runs no clean-up, so the runner's side arranges it
beforehand, for apps it cannot change (a foreign app's command, and whatever
that starts):

- each child it starts gets ``PR_SET_PDEATHSIG`` (Linux): the kernel sends it
  SIGKILL when the runner dies;
- each child runs in a process group of its own, and one small watchdog
  process per runner process (this module, run as a script) holds the read
  end of a pipe whose write end only the runner holds. The runner tells it
  each group it starts and each group it has stopped; at EOF, which comes when
  the runner dies however it dies, the watchdog kills every group still
  listed (the children's own children too), then exits.

The script side uses the standard library only and never imports golem_apps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

#: Linux's PR_SET_PDEATHSIG (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[[int, int], int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl = _load_prctl()


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGKILL the child when the runner dies (Linux).

    None where there is no such thing (the watchdog still covers those systems).
    The signal follows the thread that forks the child: the runner starts
    children from its event loop thread, which lives as long as the run.
    """
    prctl = _prctl
    if prctl is None:
        return None
    parent = os.getpid()

    def arm() -> None:  # runs in the forked child, before exec
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the runner died before the signal was armed
            os.kill(os.getpid(), signal.SIGKILL)

    return arm


class Reaper:
    """The runner's side of the watchdog: one per runner process, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(Path(__file__))],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C on the terminal must not reach it
            )
        return self._process

    def _send(self, line: bytes) -> None:
        with self._lock:
            process = self._started()
            assert process.stdin is not None
            try:
                # A few bytes into a pipe that the watchdog drains: never blocks for long.
                os.write(process.stdin.fileno(), line)
            except BrokenPipeError:  # the watchdog was killed: start another
                process.stdin.close()
                self._process = None
                os.write(self._started().stdin.fileno(), line)  # type: ignore[union-attr]

    def start(self) -> None:
        """Start the watchdog now (blocking: a process start), not with the first child."""
        with self._lock:
            self._started()

    def watch(self, pgid: int) -> None:
        """Kill process group ``pgid`` if this process dies before :meth:`forget`."""
        self._send(b"+%d\n" % pgid)

    def forget(self, pgid: int) -> None:
        """Process group ``pgid`` is stopped: leave it alone (its id may be reused)."""
        self._send(b"-%d\n" % pgid)


#: The runner process's reaper.
reaper = Reaper()


def _watchdog() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # only the runner's death ends it
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        try:
            pgid = int(line[1:])
        except ValueError:
            continue
        if line.startswith(b"+"):
            groups.add(pgid)
        else:
            groups.discard(pgid)
    for pgid in groups:
        with contextlib.suppress(OSError):  # already gone
            os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__":
    _watchdog()
