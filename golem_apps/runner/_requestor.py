"""The requestor child, restarted on its work dir when it dies, as a node restarts its container.

The task-api lets a node restart the requestor between any two calls: all
task state lives under its work dir. So a requestor that dies (a crash, the
OOM killer, a SIGKILL) does not end the run: the call that found it dead is
sent again to a fresh process on the same work dir. A call in flight when it
died is retried too; the engine answers a retried NextSubtask or Verify as
it answered the first one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import anyio
from grpclib.client import Channel
from grpclib.exceptions import StreamTerminatedError

from .._client import R, RequestorClient
from .._exceptions import ComputeFailed, TaskFailed
from .._wire import WireMessage
from ._process import REQUESTOR_EXIT_TIMEOUT, ServerCommand, ServerProcess, describe_exit

log = logging.getLogger("golem_apps.runner")

#: How long a requestor whose connection broke may take to be seen dead.
DEATH_NOTICE = 2.0
#: Restarts in a row, with no call answered in between, before the run gives up.
MAX_RESTARTS_IN_A_ROW = 3

#: What grpclib raises when the server is gone: refused, reset, or lost mid-call.
CONNECTION_ERRORS = (OSError, StreamTerminatedError)


class RequestorSupervisor:
    """Starts the requestor, restarts it when it dies, stops it at the end."""

    def __init__(
        self,
        command: ServerCommand,
        work_dir: Path,
        log_path: Path,
        env: Mapping[str, str],
        on_restart: Callable[[str], None] | None = None,
    ) -> None:
        self._command = command
        self._work_dir = work_dir
        self._log_path = log_path
        self._env = env
        self._on_restart = on_restart
        self._child: ServerProcess | None = None
        self._client: RestartingRequestor | None = None
        self._lock = anyio.Lock()
        self._in_a_row = 0
        self.restarts = 0
        """How many times the requestor was restarted."""

    async def _serve(self) -> RequestorClient:
        self._child = await ServerProcess.start(
            self._command, "requestor", self._work_dir, self._log_path, self._env
        )
        return await self._child.connect(RequestorClient)

    async def start(self) -> RestartingRequestor:
        """Start the requestor; a client that survives its restarts. ComputeFailed if it fails."""
        connected = await self._serve()
        self._client = RestartingRequestor(connected.channel, self)
        return self._client

    def answered(self) -> None:
        """A call was answered: the requestor works again."""
        self._in_a_row = 0

    async def revive(self, failed: Channel, exc: BaseException) -> bool:
        """A call on channel ``failed`` broke with ``exc``: True once it may be sent again.

        Restarts the requestor if it died; False when it is alive (the error is
        not a crash) or keeps dying.
        """
        async with self._lock:
            client, child = self._client, self._child
            assert client is not None and child is not None
            if client.channel is not failed:
                return True  # another call restarted it meanwhile
            code = await child.wait_exit(DEATH_NOTICE)
            if code is None or self._in_a_row >= MAX_RESTARTS_IN_A_ROW:
                return False
            self._in_a_row += 1
            self.restarts += 1
            client.channel.close()
            await child.stop()
            why = f"{describe_exit(code)}; restarted on its work dir"
            log.warning("requestor %s", why)
            if self._on_restart is not None:
                self._on_restart(why)
            try:
                connected = await self._serve()
            except ComputeFailed as exc2:
                raise TaskFailed(f"the requestor {describe_exit(code)}, and {exc2}") from None
            client.channel = connected.channel
            return True

    async def shutdown(self) -> None:
        """As a node does at the end: Shutdown, then a short wait for the process to exit."""
        if self._client is None or self._child is None:
            return
        try:
            await self._client.shutdown()
        except Exception as exc:  # the process is killed by stop() anyway
            log.warning("requestor Shutdown failed: %s", exc)
        await self._child.wait_exit(REQUESTOR_EXIT_TIMEOUT)

    async def stop(self) -> None:
        """Close the connection and kill whatever is left of the requestor."""
        if self._client is not None:
            self._client.close()
        if self._child is not None:
            await self._child.stop()


class RestartingRequestor(RequestorClient):
    """A RequestorClient whose calls survive the requestor's death: see the module docstring."""

    def __init__(self, channel: Channel, supervisor: RequestorSupervisor) -> None:
        super().__init__(channel)
        self._supervisor = supervisor

    async def _call(
        self,
        rpc: str,
        request: WireMessage,
        reply_type: type[R],
        timeout: float | None = None,
        *,
        service: str | None = None,
    ) -> R:
        while True:
            channel = self.channel
            try:
                reply = await super()._call(rpc, request, reply_type, timeout, service=service)
            except CONNECTION_ERRORS as exc:
                if rpc == "Shutdown" or not await self._supervisor.revive(channel, exc):
                    raise
                continue
            self._supervisor.answered()
            return reply
