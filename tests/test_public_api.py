"""The public API: ``__all__`` is complete and importable; importing it stays light."""

from __future__ import annotations

import subprocess
import sys
import types

import golem_apps

from .conftest import ROOT


def test_all_names_resolve_and_are_documented() -> None:
    assert sorted(golem_apps.__all__) == golem_apps.__all__
    for name in golem_apps.__all__:
        value = getattr(golem_apps, name)
        assert getattr(value, "__doc__", None), f"{name} has no docstring"


def test_public_names_without_all_entry_are_private() -> None:
    public = {n for n in vars(golem_apps) if not n.startswith("_")} - {"annotations", "constants"}
    public -= {n for n in public if n in {"TYPE_CHECKING", "Any", "engine", "server", "proto"}}
    # Submodules (appdef, serve, ...) become attributes once some test imported them.
    public -= {n for n in public if isinstance(getattr(golem_apps, n), types.ModuleType)}
    assert public <= set(golem_apps.__all__)


def imported_modules(code: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint('\\n'.join(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(result.stdout.split())


HEAVY = {
    "pydantic",  # only for apps with typed params
    "sqlite3",
    "rich",
    "golem_apps.engine",
    "golem_apps.runner",
    "golem_apps.server._requestor",
}


def test_import_golem_apps_is_light() -> None:
    modules = imported_modules("import golem_apps")
    assert not modules & (HEAVY | {"grpclib", "betterproto"})


def test_provider_start_up_path_never_imports_the_requestor_side() -> None:
    modules = imported_modules(
        "import tests.apps.sample, golem_apps.serve, golem_apps.server._provider"
    )
    assert "golem_apps.server._provider" in modules
    assert not modules & HEAVY
