"""The package: its version in one literal, the ``golem-apps`` front door, its metadata."""

from __future__ import annotations

import subprocess
import sys
import tomllib
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
