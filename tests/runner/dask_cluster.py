"""A real Dask cluster on loopback for the tests: ``dask scheduler`` and ``dask worker`` processes.

Started with the distributed package's own command-line tools, as a user
starts them; each worker is one process (``--no-nanny``) with one thread,
so that killing it is killing the worker.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent.parent
DASK = Path(sys.executable).parent / "dask"
#: Safety bound on a process's start (not a timing assertion).
START_LIMIT = 60.0

_STARTED = re.compile(r"Start worker at:\s+(\S+)")


def _wait_for_line(log: Path, pattern: re.Pattern[str], process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + START_LIMIT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        found = pattern.search(text)
        if found and (pattern is not _STARTED or "Registered to:" in text):
            return found.group(1)
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{text}")
        time.sleep(0.05)
    raise TimeoutError(f"{process.args!r} did not start:\n{log.read_text(errors='replace')}")


@dataclass
class DaskWorker:
    """One ``dask worker`` process."""

    process: subprocess.Popen[bytes]
    address: str
    local_directory: Path

    def providers(self) -> list[psutil.Process]:
        """Its provider processes (``golem_apps.serve ... provider``) running now."""
        found = []
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for child in children:
            try:
                command = child.cmdline()
            except psutil.Error:
                continue
            if "golem_apps.serve" in command and "provider" in command:
                found.append(child)
        return found


class DaskCluster:
    """A scheduler and its workers, each a child process of the test session."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.workers: list[DaskWorker] = []
        self._count = 0
        log = folder / "scheduler.log"
        with log.open("wb") as out:
            self.scheduler = subprocess.Popen(
                [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=ROOT,
            )  # fmt: skip
        self.address = _wait_for_line(log, re.compile(r"Scheduler at:\s+(\S+)"), self.scheduler)

    def start_worker(self) -> DaskWorker:
        """One more worker, registered with the scheduler when this returns."""
        self._count += 1
        log = self.folder / f"worker{self._count}.log"
        local = self.folder / f"worker{self._count}"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(DASK), "worker", self.address, "--host", "127.0.0.1",
                    "--nworkers", "1", "--nthreads", "1", "--no-nanny", "--no-dashboard",
                    "--local-directory", str(local), "--death-timeout", "60",
                ],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=ROOT,
            )  # fmt: skip
        try:
            address = _wait_for_line(log, _STARTED, process)
        except BaseException:
            process.kill()
            process.wait()
            raise
        worker = DaskWorker(process, address, local)
        self.workers.append(worker)
        return worker

    def kill(self, worker: DaskWorker) -> list[psutil.Process]:
        """SIGKILL the worker; the providers it was running then."""
        providers = worker.providers()
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait()
        self.workers.remove(worker)
        return providers

    def ensure(self, count: int) -> list[DaskWorker]:
        """Exactly ``count`` live workers (the oldest kept)."""
        for worker in [w for w in self.workers if w.process.poll() is not None]:
            self.workers.remove(worker)
        while len(self.workers) > count:
            self.stop(self.workers[-1])
        while len(self.workers) < count:
            self.start_worker()
        return list(self.workers)

    def stop(self, worker: DaskWorker) -> None:
        """Stop a worker gracefully (SIGTERM)."""
        worker.process.terminate()
        try:
            worker.process.wait(10)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
        self.workers.remove(worker)

    def close(self) -> None:
        """Stop every worker, then the scheduler."""
        for worker in list(self.workers):
            self.stop(worker)
        self.scheduler.terminate()
        try:
            self.scheduler.wait(10)
        except subprocess.TimeoutExpired:
            self.scheduler.kill()
            self.scheduler.wait()
