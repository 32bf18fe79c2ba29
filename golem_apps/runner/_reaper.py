"""The reaper: no child of the runner outlives it, even when the runner is SIGKILLed.

A killed process runs no clean-up, so the runner's side arranges it
beforehand, for apps it cannot change (a foreign app's command, and whatever
that starts). One small watchdog process per runner process (this module,
run as a script) holds the read end of a pipe whose write end only the
runner holds; EOF comes when the runner dies, however it dies. Then the
watchdog kills:

- every process group the runner told it about: each child runs in a group
  of its own, so its own children go too;
- on Linux, every process whose environment carries the runner's mark
  (:data:`MARK`, set in each child's environment and inherited by their
  children): this covers a child started just before the runner died, not
  yet told, and a helper that left its group.

The watchdog then exits. It costs one process per runner, nothing per child
(``PR_SET_PDEATHSIG`` would need a ``preexec_fn``, which makes every spawn
fork the runner: some 2 ms of its event loop each).

The script side uses the standard library only and never imports golem_apps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

#: The environment variable that marks the runner's children (its value: the watchdog's token).
MARK = "GOLEM_APPS_RUNNER_TOKEN"


class Reaper:
    """The runner's side of the watchdog: one per runner process, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        #: Marks this process's children (the value of :data:`MARK` in their environment).
        self.token = uuid.uuid4().hex

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(Path(__file__)), self.token],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C on the terminal must not reach it
            )
        return self._process

    def _send(self, line: bytes) -> None:
        with self._lock:
            for _ in range(2):
                stdin = self._started().stdin
                assert stdin is not None
                try:
                    # A few bytes into a pipe the watchdog drains: never blocks for long.
                    os.write(stdin.fileno(), line)
                    return
                except BrokenPipeError:  # the watchdog was killed: start another
                    stdin.close()
                    self._process = None

    def start(self) -> None:
        """Start the watchdog now (blocking: a process start), not with the first child."""
        with self._lock:
            self._started()

    def mark(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` with this runner's mark: the watchdog finds such processes by it."""
        return {**env, MARK: self.token}

    def watch(self, pgid: int) -> None:
        """Kill process group ``pgid`` if this process dies before :meth:`forget`."""
        self._send(b"+%d\n" % pgid)

    def forget(self, pgid: int) -> None:
        """Process group ``pgid`` is stopped: leave it alone (its id may be reused)."""
        self._send(b"-%d\n" % pgid)


#: The runner process's reaper.
reaper = Reaper()


def _marked(token: str) -> list[int]:
    """Pids of the processes whose environment has ``MARK=token`` (Linux; else none)."""
    wanted = f"{MARK}={token}".encode()
    found = []
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]  # noqa: PTH208
    except OSError:
        return []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as file:  # noqa: PTH123
                if wanted in file.read().split(b"\0"):
                    found.append(pid)
        except OSError:
            continue  # gone, or not ours
    return found


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(OSError):  # already gone
        os.killpg(pgid, signal.SIGKILL)


def _watchdog(token: str) -> None:
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
        _kill_group(pgid)
    for pid in _marked(token):
        with contextlib.suppress(OSError):
            _kill_group(os.getpgid(pid))
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    _watchdog(sys.argv[1])
