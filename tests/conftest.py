"""Shared fixtures: anyio's own pytest plugin, fixed to asyncio (grpclib is asyncio-only)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

#: pytester: the testing plugin is tried in scratch projects (tests/testing).
pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    """An empty requestor work dir."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def python() -> str:
    """The interpreter to start ``python -m golem_apps.serve`` subprocesses with."""
    return sys.executable
