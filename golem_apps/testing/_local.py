"""``run_local``: one task, requestor and providers served in this process over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from .._exceptions import TaskFailed
from .._provider import Provider
from .._requestor import Requestor
from ..runner import RunResult, run_task

#: Seconds a whole local run may take by default: far more than a test's task needs.
DEFAULT_TIMEOUT = 60.0


async def run_local_async(
    requestor: Requestor,
    provider: Provider,
    *,
    params: Mapping[str, Any] | None = None,
    inputs: Sequence[str | Path] = (),
    providers: int = 2,
    max_subtasks: int = 0,
    timeout: float = DEFAULT_TIMEOUT,
    max_attempts: int = 1,
    work_dir: str | Path | None = None,
) -> RunResult:
    """The async twin of :func:`run_local`, for tests that run in an event loop (asyncio)."""
    failed: TaskFailed | None = None
    try:
        with anyio.fail_after(timeout):
            return await run_task(
                (requestor, provider),
                params=params,
                inputs=inputs,
                providers=providers,
                max_subtasks=max_subtasks,
                max_attempts=max_attempts,
                work_dir=work_dir,
                in_process=True,
            )
    except TimeoutError:
        raise TimeoutError(f"the task did not finish within {timeout:g} s") from None
    except TaskFailed as exc:
        failed = exc
    # Raised here, out of the except block: the app's exception with its own
    # traceback and causes, not chained to the runner's TaskFailed.
    if failed.app_exception is not None:
        failed.app_exception.add_note(f"golem_apps.testing: the task failed: {failed}")
        raise failed.app_exception
    raise failed


def run_local(
    requestor: Requestor,
    provider: Provider,
    *,
    params: Mapping[str, Any] | None = None,
    inputs: Sequence[str | Path] = (),
    providers: int = 2,
    max_subtasks: int = 0,
    timeout: float = DEFAULT_TIMEOUT,
    max_attempts: int = 1,
    work_dir: str | Path | None = None,
) -> RunResult:
    """Run one task of the app to completion in this process and return what happened.

    As a node does, over real loopback sockets: the requestor is served, gets
    CreateTask with ``params`` (and ``max_subtasks``, 0 = no limit) and the
    ``inputs`` files; up to ``providers`` one-shot providers compute at once;
    each result is verified, then merged. The result's ``outputs_dir`` holds
    the task's outputs (``status`` and ``failures`` tell the rest).

    A part's first failure fails the run (``max_attempts=N`` retries it, as
    the local runner does): the handler's own exception is raised, with a note
    saying what failed; other failures raise :class:`golem_apps.TaskFailed`.
    A run longer than ``timeout`` seconds raises TimeoutError. ``work_dir``
    defaults to a new temporary folder, kept so that the outputs stay readable.

    Call it from plain (sync) code; in an event loop, await
    :func:`run_local_async`.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no event loop here: good
    else:
        raise RuntimeError("run_local() is called in an event loop: await run_local_async()")
    return anyio.run(
        lambda: run_local_async(
            requestor,
            provider,
            params=params,
            inputs=inputs,
            providers=providers,
            max_subtasks=max_subtasks,
            timeout=timeout,
            max_attempts=max_attempts,
            work_dir=work_dir,
        ),
        backend="asyncio",  # grpclib is asyncio-only
    )
