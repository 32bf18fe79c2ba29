"""The engine's walls: it knows nothing of gRPC, and the provider never loads it."""

from __future__ import annotations

import subprocess

from ..conftest import ROOT


def loaded_after(python: str, statement: str) -> set[str]:
    """The modules a fresh interpreter has loaded after ``statement``."""
    code = f"import sys\n{statement}\nprint(' '.join(sys.modules))"
    result = subprocess.run(
        [python, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def test_the_engine_imports_no_grpc(python: str) -> None:
    modules = loaded_after(python, "import golem_apps.engine._sqlite")
    assert "sqlite3" in modules
    assert not {m for m in modules if m.startswith(("grpclib", "betterproto", "golem_apps.proto"))}


def test_the_provider_start_up_loads_no_engine_nor_sqlite(python: str) -> None:
    modules = loaded_after(python, "import golem_apps.serve, golem_apps.server._provider")
    assert "golem_apps.server._provider" in modules
    assert not {m for m in modules if m.startswith(("golem_apps.engine", "sqlite3", "_sqlite3"))}
