"""The provider's ``golem_apps.ProviderProgress`` service: progress and heartbeats, streamed.

On the provider's start-up path: standard library and grpclib only. Its two
messages (``protos/golem_apps/progress.proto``) are the light generated ones
of :mod:`golem_apps._wire`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from grpclib.const import Cardinality, Handler

from .._wire import ProgressUpdate, WatchRequest
from ._unary import recv_request

#: The service's full name: Health answers SERVING for it, so clients know it is there.
SERVICE = "golem_apps.ProviderProgress"
#: The Watch RPC's path.
WATCH_PATH = f"/{SERVICE}/Watch"


class ProgressService:
    """Holds the running computation's last progress and streams it to watchers.

    :meth:`report` may be called from any thread (a sync compute runs in its
    own); updates are coalesced: a watcher gets the latest, never a backlog.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._pending: tuple[str, float, str] = ("", 0.0, "")
        self._beats = 0
        self._scheduled = False
        self._current = ProgressUpdate()
        self._watchers: set[asyncio.Event] = set()
        self._closed = False

    def bind(self) -> None:
        """Remember the serving event loop (call from it)."""
        self._loop = asyncio.get_running_loop()

    def sink(self, subtask_id: str) -> Callable[[float, str], None]:
        """The callback a ComputeContext reports its progress to."""

        def report(fraction: float, message: str) -> None:
            self.report(subtask_id, fraction, message)

        return report

    def report(self, subtask_id: str, fraction: float, message: str) -> None:
        """Record a progress report (a heartbeat); thread-safe, never blocks."""
        with self._lock:
            self._pending = (subtask_id, fraction, message)
            self._beats += 1
            if self._scheduled or self._loop is None:
                return
            self._scheduled = True
        with suppress(RuntimeError):  # the loop is closed: nobody watches any more
            self._loop.call_soon_threadsafe(self._publish)

    def _publish(self) -> None:
        with self._lock:
            self._scheduled = False
            subtask_id, fraction, message = self._pending
            self._current = ProgressUpdate(
                subtask_id=subtask_id, fraction=fraction, message=message, beats=self._beats
            )
        self._wake()

    def _wake(self) -> None:
        for event in self._watchers:
            event.set()

    def close(self) -> None:
        """The provider's request is answered: end every stream."""
        self._closed = True
        self._wake()

    async def watch(self, stream: Any) -> None:
        """Watch: the current state at once, then each change, until :meth:`close`."""
        await recv_request(stream)  # undecodable: INVALID_ARGUMENT, as for every request
        event = asyncio.Event()
        self._watchers.add(event)
        try:
            sent = -1
            while True:
                update = self._current
                if update.beats != sent:
                    await stream.send_message(update)
                    sent = update.beats
                if self._closed:
                    return
                await event.wait()
                event.clear()
        finally:
            self._watchers.discard(event)

    def __mapping__(self) -> dict[str, Handler]:
        return {
            WATCH_PATH: Handler(self.watch, Cardinality.UNARY_STREAM, WatchRequest, ProgressUpdate)
        }
