"""Fixtures of the engine tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from golem_apps.engine import _db


@pytest.fixture
def db(work_dir: Path) -> Iterator[_db.Database]:
    """A Database in the work dir, with its thread; closed after the test."""
    database = _db.Database(work_dir / _db.DB_NAME)
    yield database
    database.close()
