"""Compute beside the progress Watch: the stream opens only for a computation that lasts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from golem_apps import ProviderClient
from golem_apps._client import ProgressReport
from golem_apps.runner._nodes import ComputeJob, compute_watched

pytestmark = pytest.mark.anyio
#: Safety bound on a test (not a measurement).
LIMIT = 10.0


class FakeProvider:
    """A provider's client whose Compute ends when told, and that counts its Watch streams."""

    def __init__(self, takes: float | None = None) -> None:
        self.answer = asyncio.Event()
        self.watches = 0
        self.takes = takes

    async def compute(self, task_id: str, subtask_id: str, params: dict[str, Any]) -> str:
        if self.takes is not None:
            await asyncio.sleep(self.takes)  # a timer due before the runner's: no timing race
        else:
            await self.answer.wait()
        return "out.txt"

    async def watch_progress(self) -> AsyncGenerator[ProgressReport, None]:
        self.watches += 1
        yield ProgressReport("s", 0.5, "half", 1)
        self.answer.set()  # the computation ends once its progress was seen
        await asyncio.Event().wait()


def job(tmp_path: Path, seen: list[ProgressReport]) -> ComputeJob:
    return ComputeJob("t", "s", {}, tmp_path, tmp_path / "log", on_progress=seen.append)


async def test_a_quick_computation_opens_no_watch_stream(tmp_path: Path) -> None:
    provider = FakeProvider(takes=0.001)  # far shorter than WATCH_AFTER
    seen: list[ProgressReport] = []
    with anyio.fail_after(LIMIT):
        output = await compute_watched(cast(ProviderClient, provider), job(tmp_path, seen))
    assert (output, provider.watches, seen) == ("out.txt", 0, [])


async def test_a_computation_that_lasts_is_watched(tmp_path: Path) -> None:
    provider = FakeProvider()
    seen: list[ProgressReport] = []
    with anyio.fail_after(LIMIT):
        output = await compute_watched(cast(ProviderClient, provider), job(tmp_path, seen))
    assert (output, provider.watches) == ("out.txt", 1)
    assert seen == [ProgressReport("s", 0.5, "half", 1)]


async def test_without_the_service_there_is_no_watch(tmp_path: Path) -> None:
    provider = FakeProvider()
    seen: list[ProgressReport] = []
    with anyio.move_on_after(0.3):  # it waits for a report that never comes
        await compute_watched(cast(ProviderClient, provider), job(tmp_path, seen), watch=False)
    assert (provider.watches, seen) == (0, [])
