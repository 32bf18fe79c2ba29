"""The pytest plugin (entry point ``pytest11``): fixtures for testing a golem_apps app.

Define a ``golem_app`` fixture returning your app (a module or object with
``requestor`` and ``provider``, or a ``(requestor, provider)`` pair); then:

- ``golem_run(params=..., ...)`` runs one task with :func:`golem_apps.testing.run_local`
  in the test's temporary folder and returns its result;
- ``golem_requestor_client`` (async, for ``@pytest.mark.anyio`` tests) serves
  the requestor on ``golem_work_dir / "requestor"`` and yields a connected
  :class:`golem_apps.RequestorClient`;
- ``golem_provider_client`` (async) serves one provider request on
  ``golem_work_dir / "provider"`` and yields a connected :class:`golem_apps.ProviderClient`.

Imported by pytest in every session where golem_apps is installed, so it
imports nothing heavy until a fixture is used.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .._client import ProviderClient, RequestorClient
    from .._provider import Provider
    from .._requestor import Requestor
    from ..runner import RunResult

    GolemRun = Callable[..., RunResult]


def _sides(app: object) -> tuple[Requestor, Provider]:
    from .._cli import check_run_apps
    from .._exceptions import UsageError

    try:
        if isinstance(app, tuple) and len(app) == 2:
            return check_run_apps(app[0], app[1], "the golem_app fixture")
        requestor = getattr(app, "requestor", None)
        provider = getattr(app, "provider", None)
        return check_run_apps(requestor, provider, "the golem_app fixture")
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture
def golem_app() -> object:
    """Your app: override it (a module or object with requestor and provider, or a pair)."""
    raise pytest.UsageError(
        "define a golem_app fixture returning your app: a module or object with "
        "'requestor' and 'provider', or a (requestor, provider) pair"
    )


@pytest.fixture
def golem_work_dir(tmp_path: Path) -> Path:
    """The folder the fixtures serve and run in (a fresh one per test)."""
    path = tmp_path / "golem"
    path.mkdir()
    return path


@pytest.fixture
def golem_run(golem_app: object, golem_work_dir: Path) -> GolemRun:
    """A function running one task of ``golem_app`` (as ``run_local``), in its own work dir.

    Call it with ``run_local``'s keyword arguments (``params``, ``inputs``,
    ``providers``, ``max_subtasks``, ``timeout``, ``max_attempts``).
    """
    from . import run_local

    requestor, provider = _sides(golem_app)
    runs = itertools.count(1)

    def run(
        *,
        params: Mapping[str, Any] | None = None,
        inputs: Sequence[str | Path] = (),
        **options: Any,
    ) -> RunResult:
        work_dir = golem_work_dir / f"run{next(runs)}"
        return run_local(
            requestor, provider, params=params, inputs=inputs, work_dir=work_dir, **options
        )

    return run


@pytest.fixture
async def golem_requestor_client(
    golem_app: object, golem_work_dir: Path
) -> AsyncIterator[RequestorClient]:
    """The app's requestor, served in this process; a client connected to it."""
    from .._client import RequestorClient
    from ..server._requestor import serve_requestor

    requestor, _ = _sides(golem_app)
    work_dir = golem_work_dir / "requestor"
    work_dir.mkdir(exist_ok=True)
    async with (
        serve_requestor(requestor, work_dir=work_dir) as server,
        await RequestorClient.connect("127.0.0.1", server.port) as client,
    ):
        yield client


@pytest.fixture
async def golem_provider_client(
    golem_app: object, golem_work_dir: Path
) -> AsyncIterator[ProviderClient]:
    """The app's provider, served in this process for one request; a client connected to it.

    Its task dir is ``golem_work_dir / "provider"``: put a subtask's resources
    in its ``subtask_inputs`` before calling ``compute``.
    """
    from .._client import ProviderClient
    from ..server._provider import serve_provider

    _, provider = _sides(golem_app)
    work_dir = golem_work_dir / "provider"
    work_dir.mkdir(exist_ok=True)
    async with (
        serve_provider(provider, work_dir=work_dir) as server,
        await ProviderClient.connect("127.0.0.1", server.port) as client,
    ):
        yield client
