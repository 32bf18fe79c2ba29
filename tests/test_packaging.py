"""The package: its version in one literal, the ``golem-apps`` front door, its metadata."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tomllib
import zipfile
from importlib.metadata import metadata, version
from pathlib import Path

import pytest

import golem_apps
from golem_apps.__main__ import COMMANDS, main

from .conftest import ROOT


def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        project: dict[str, object] = tomllib.load(file)["project"]
    return project


def test_version_is_pyprojects_and_the_installed_one() -> None:
    assert golem_apps.__version__ == pyproject()["version"]
    assert version("golem_apps") == golem_apps.__version__


def test_metadata_has_an_spdx_license_classifiers_and_urls() -> None:
    meta = metadata("golem_apps")
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    classifiers = meta.get_all("Classifier") or []
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert "Typing :: Typed" in classifiers
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Repository"} <= set(urls)


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"golem-apps {golem_apps.__version__}\n"


def test_each_command_takes_its_module_form_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for command in COMMANDS:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        usage = capsys.readouterr().out
        assert usage.startswith(f"usage: golem-apps {command} ")
        module_form = subprocess.run(
            [sys.executable, "-m", f"golem_apps.{command}", "--help"],
            capture_output=True, text=True, check=True, cwd=ROOT,
        ).stdout  # fmt: skip
        # The same options and help, only the program name differs.
        assert usage.replace(
            f"golem-apps {command}", f"python -m golem_apps.{command}"
        ).split() == (module_form.split())
        assert "``" not in usage  # plain text, not reST


def test_an_unknown_command_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("golem-apps: error: argument COMMAND: invalid choice: 'deploy'")
    assert err.count("\n") == 1
    assert main([]) == 2
    assert capsys.readouterr().err == (
        "golem-apps: error: a command is required: serve, run, appdef (see golem-apps --help)\n"
    )


def test_command_errors_name_the_front_door(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["appdef", "no_such_module_xyz"]) == 2
    assert capsys.readouterr().err.startswith("golem-apps appdef: error: cannot import module")


def test_console_script_is_installed() -> None:
    assert pyproject()["scripts"] == {"golem-apps": "golem_apps.__main__:main"}
    script = Path(sys.executable).parent / "golem-apps"  # next to this venv's python
    result = subprocess.run(
        [str(script), "--version"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert result.stdout.strip() == f"golem-apps {golem_apps.__version__}"


APP = """\
from pathlib import Path

from golem_apps import ComputeContext, Part, Provider, Requestor, TaskContext

requestor = Requestor("upper")
provider = Provider()


@requestor.task
def split(task: TaskContext) -> list[Part]:
    return [Part(params={"text": t}, name=t) for t in task.params["texts"]]


@provider.compute
def compute(ctx: ComputeContext) -> Path:
    out = ctx.subtask_dir / "upper.txt"
    out.write_text(ctx.params["text"].upper())
    return out
"""

#: Not part of the project's source: the venv, caches, build and run output, VCS data.
NOT_SOURCE = {
    ".git", ".venv", "site", "build", "dist", "demo_output", "__pycache__", ".pytest_cache",
    ".mypy_cache", ".ruff_cache", ".hypothesis", ".coverage",
}  # fmt: skip


def project_files() -> set[str]:
    """Every file of the project (relative paths): all of it goes into the sdist."""
    found = set()
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT)
        if not path.is_file() or path.suffix == ".pyc":
            continue
        if any(part in NOT_SOURCE or part.endswith(".egg-info") for part in relative.parts):
            continue
        found.add(str(relative))
    return found


def run(*argv: str | Path, cwd: Path = ROOT, timeout: float = 300) -> str:
    result = subprocess.run(
        [str(arg) for arg in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.slow
def test_the_built_wheel_works_alone_and_the_sdist_is_complete(tmp_path: Path) -> None:
    """Build both, install the wheel without extras in a fresh venv, run an app file with it."""
    dist = tmp_path / "dist"
    output = run(sys.executable, "-m", "build", "--outdir", dist, ROOT)
    assert "deprecat" not in output.lower(), output  # e.g. a license table
    (wheel,) = dist.glob("golem_apps-*.whl")
    (sdist,) = dist.glob("golem_apps-*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    # The wheel holds the package only: no tests, examples or docs.
    assert {name.split("/")[0] for name in names} == {
        "golem_apps",
        f"golem_apps-{golem_apps.__version__}.dist-info",
    }
    with tarfile.open(sdist) as archive:
        prefix = f"golem_apps-{golem_apps.__version__}/"
        members = {m.name.removeprefix(prefix) for m in archive.getmembers() if m.isfile()}
    assert project_files() - members == set(), "missing from the sdist"
    # A fresh venv, the wheel alone (pip fetches grpclib, betterproto, anyio; its cache is reused).
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    pip: list[str | Path] = [venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check"]
    run(*pip, "install", "--quiet", wheel)
    run(*pip, "check")
    installed = run(*pip, "list", "--format=freeze").lower()
    assert "rich==" not in installed and "pydantic==" not in installed  # no extras
    script = venv / "bin" / "golem-apps"
    assert run(script, "--version").strip() == f"golem-apps {golem_apps.__version__}"
    # An app file in a folder of its own: nothing from this checkout is importable there.
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.py").write_text(APP)
    summary = run(
        script, "run", "app.py", "--providers", "2", "--params", '{"texts": ["a", "b", "c"]}',
        "--out", "out", cwd=project,
    )  # fmt: skip
    assert "parts verified: 3" in summary
    outputs = sorted(p.name for p in (project / "out").iterdir())
    assert outputs == ["a-upper.txt", "b-upper.txt", "c-upper.txt"]
    assert (project / "out" / "b-upper.txt").read_text() == "B"
