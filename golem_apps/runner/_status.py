"""The requestor's task status, over the wire: for the progress bar, the bans and the summary.

golem_apps requestors serve ``golem_apps.RequestorStatus`` beside RequestorApp
(see :meth:`golem_apps.RequestorClient.task_status`); the runner asks Health
whether this one does before it calls it. Another app's requestor has no
such service: the bar then pulses without a total, no ban is known and the
summary has no status. The runner never reads the requestor's files.
"""

from __future__ import annotations

import logging

import anyio
from grpclib.exceptions import GRPCError

from .._client import RequestorClient
from .._taskstatus import STATUS_SERVICE, TaskStatus
from ._progress import Reporter, Stats

log = logging.getLogger("golem_apps.runner")

#: Seconds between two status calls while the task runs (the bar's pace).
FOLLOW_INTERVAL = 1.0


class StatusFeed:
    """Asks the requestor for the task's status, if it serves it; the last answer stays."""

    def __init__(
        self, client: RequestorClient, task_id: str, stats: Stats, reporter: Reporter
    ) -> None:
        self._client = client
        self._task_id = task_id
        self._stats = stats
        self._reporter = reporter
        self._offered: bool | None = None
        self.last: TaskStatus | None = None
        """The latest status received (None before the first, or without the service)."""

    async def offered(self) -> bool:
        """Whether the requestor serves golem_apps.RequestorStatus (asked once, of Health)."""
        if self._offered is None:
            try:
                self._offered = await self._client.offers(STATUS_SERVICE)
            except Exception as exc:  # the status is a bonus: never fail a run for it
                log.warning("cannot tell whether the requestor serves its status: %s", exc)
                self._offered = False
        return self._offered

    async def fetch(self) -> TaskStatus | None:
        """A fresh status (and the reporter told), or None without the service."""
        if not await self.offered():
            return None
        try:
            status = await self._client.task_status(self._task_id)
        except (GRPCError, OSError) as exc:
            log.warning("TaskStatus failed: %s", exc)
            return self.last
        self.last = self._stats.status = status
        self._reporter.status(status)
        return status

    async def follow(self, interval: float = FOLLOW_INTERVAL) -> None:
        """Fetch every ``interval`` seconds until cancelled (for the bar's total and ETA)."""
        while True:
            if await self.fetch() is None:
                return  # no status service: nothing to follow
            await anyio.sleep(interval)

    async def ban(self, node_id: str) -> str | None:
        """Why the requestor bans ``node_id`` now; None if it does not (or cannot say)."""
        status = await self.fetch()
        return None if status is None else status.bans.get(node_id)
