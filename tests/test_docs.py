"""The docs site: the API reference covers golem_apps.__all__, docstrings exist, it builds."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import golem_apps

from .conftest import ROOT

DOCS = ROOT / "docs"


def referenced_names() -> list[str]:
    """The ``::: golem_apps.NAME`` directives of the API reference page, in order."""
    text = (DOCS / "reference.md").read_text(encoding="utf-8")
    return re.findall(r"^::: golem_apps\.(\w+)\s*$", text, flags=re.MULTILINE)


def test_reference_lists_exactly_the_public_api() -> None:
    names = [name for name in referenced_names() if name in golem_apps.__all__]
    assert len(names) == len(set(names)), "a name is documented twice"
    assert set(golem_apps.__all__) - set(names) == set(), "exported but not in the reference"
    modules = {"appdef"}  # command-line modules documented on their own
    extra = set(referenced_names()) - set(golem_apps.__all__) - modules
    assert extra == set(), "in the reference but not exported"


def own_docstring(obj: object) -> str:
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return (doc or "").strip()


def test_every_public_name_and_member_has_a_docstring() -> None:
    missing = []
    for name in golem_apps.__all__:
        obj = getattr(golem_apps, name)
        doc = own_docstring(obj)
        # A dataclass without a docstring gets its signature as one: not documentation.
        if not doc or doc.startswith(f"{name}("):
            missing.append(name)
        if not isinstance(obj, type):
            continue
        for member_name, member in vars(obj).items():
            if member_name.startswith("_"):
                continue
            target = member.fget if isinstance(member, property) else member
            if isinstance(target, classmethod | staticmethod):
                target = target.__func__
            if inspect.isfunction(target) and not (target.__doc__ or "").strip():
                missing.append(f"{name}.{member_name}")
    assert missing == []


def test_site_builds_strictly_and_offline(tmp_path: Path) -> None:
    """``make docs`` in short: mkdocs --strict fails on any warning (missing page, bad link)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "s")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    reference = (tmp_path / "s" / "reference" / "index.html").read_text(encoding="utf-8")
    for name in golem_apps.__all__:
        assert f'id="golem_apps.{name}"' in reference, name
    assert not re.search(r":(class|meth|func|data):<code>", reference), "Sphinx roles left raw"
    # The performance table is wide: that page hides both sidebars (no clipping at 1280 px).
    performance = (tmp_path / "s" / "performance" / "index.html").read_text(encoding="utf-8")
    for sidebar in ("navigation", "toc"):
        assert re.search(rf'data-md-type="{sidebar}"\s+hidden>', performance), sidebar
    # The registries: every public method shown, the decorators before the plumbing.
    for registry in (golem_apps.Requestor, golem_apps.Provider):
        prefix = f"golem_apps.{registry.__name__}."
        shown = re.findall(rf'id="{re.escape(prefix)}(\w+)"', reference)
        public = {
            n for n in dir(registry) if not n.startswith("_") and callable(getattr(registry, n))
        }
        assert set(shown) == public, registry
        first = "task" if registry is golem_apps.Requestor else "compute"
        assert shown[0] == first and shown.index("handler") > shown.index("lifespan")


def test_site_and_repository_urls_are_pyprojects() -> None:
    import tomllib

    with (ROOT / "pyproject.toml").open("rb") as file:
        urls = tomllib.load(file)["project"]["urls"]
    mkdocs = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    site_url = re.search(r"^site_url: (\S+)$", mkdocs, re.MULTILINE)
    repo_url = re.search(r"^repo_url: (\S+)$", mkdocs, re.MULTILINE)
    assert site_url and site_url.group(1) == urls["Documentation"]
    assert repo_url and repo_url.group(1) == urls["Repository"]
