"""``python -m golem_apps.appdef``: the app definition file and its id (spec §7)."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from golem_apps import ConfigError, Requestor, __version__
from golem_apps.appdef import (
    DOCKERIGNORE,
    app_definition,
    app_id,
    dockerfile,
    main,
    with_pyproject,
    write_app_definition,
)

from .conftest import ROOT
from .test_entrypoint import instructions

SPEC_ORDER = [
    "name",
    "requestor_env",
    "requestor_prereq",
    "max_benchmark_score",
    "version",
    "description",
    "author",
    "license",
    "market_strategy",
]


def node_id(definition: dict[str, Any]) -> str:
    """The id as the spec defines it, written out independently of golem_apps."""
    defaults = {
        "version": "0.0",
        "description": "",
        "author": "",
        "license": "",
        "market_strategy": "brass",
    }
    ordered = {key: definition.get(key, defaults.get(key)) for key in SPEC_ORDER}
    text = json.dumps(ordered, separators=(", ", ": "), ensure_ascii=True)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def full_app() -> Requestor:
    return Requestor(
        "mandel",
        version="1.2",
        description="Mandelbrot tiles — fast",  # non-ASCII: json.dumps escapes it
        author="Ada <ada@example.org>",
        license="MIT",
        image="golemfactory/mandel",
        tag="1.2",
        max_benchmark_score=250,
        market_strategy="wasm",
    )


def test_written_file_is_named_and_identified_as_the_node_would(tmp_path: Path) -> None:
    path = write_app_definition(full_app(), tmp_path)
    written = json.loads(path.read_text(encoding="utf-8"))
    assert list(written) == SPEC_ORDER
    assert written["requestor_prereq"] == {"image": "golemfactory/mandel", "tag": "1.2"}
    assert written["requestor_env"] == "docker_cpu"
    assert written["max_benchmark_score"] == 250.0
    assert isinstance(written["max_benchmark_score"], float)
    assert written["market_strategy"] == "wasm"
    assert path.name == f"mandel_1.2_{node_id(written)}.json"


def test_id_ignores_key_order_and_formatting_but_not_values() -> None:
    definition = app_definition(full_app())
    shuffled = dict(reversed(list(definition.items())))
    assert app_id(shuffled) == app_id(definition) == node_id(definition)
    assert app_id({**definition, "version": "1.3"}) != app_id(definition)


def test_id_fills_in_the_spec_defaults() -> None:
    minimal = {
        "name": "x",
        "requestor_env": "docker_cpu",
        "requestor_prereq": {"image": "x", "tag": "latest"},
        "max_benchmark_score": 1.0,
    }
    explicit = {
        **minimal,
        "version": "0.0",
        "description": "",
        "author": "",
        "license": "",
        "market_strategy": "brass",
    }
    assert app_id(minimal) == app_id(explicit) == node_id(minimal)
    with pytest.raises(ConfigError, match="max_benchmark_score"):
        app_id({"name": "x", "requestor_env": "e", "requestor_prereq": {}})


def test_requestor_env_and_prereq_can_be_given() -> None:
    prereq = {"image": "me/r", "tag": "2"}
    app = Requestor("x", image="me/x", requestor_env="docker_gpu", requestor_prereq=prereq)
    definition = app_definition(app)
    assert definition["requestor_env"] == "docker_gpu"
    assert definition["requestor_prereq"] == {"image": "me/r", "tag": "2"}
    # The provider's prerequisites are not affected.
    assert app.info.provider_prerequisites == {"image": "me/x", "tag": "latest"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"market_strategy": "gold"}, "market_strategy must be one of brass, wasm"),
        ({"max_benchmark_score": float("inf")}, "max_benchmark_score must be a finite number"),
        ({"version": "1/2"}, "version must not contain a path separator"),
        ({"requestor_prereq": {"image": "x"}}, r"must be exactly \{\"image\": \.\.\., \"tag\""),
        ({"requestor_prereq": {"image": "x", "tag": "1", "extra": "y"}}, "must be exactly"),
        ({"tag": ""}, "with non-empty strings"),
    ],
)
def test_bad_metadata_is_a_clear_error(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        write_app_definition(Requestor("x", **kwargs), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_definition_and_dockerfile(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "golem_apps.appdef", "tests.apps.sample", "--out", str(out),
         "--dockerfile"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    json_path, docker_path, ignore_path, wheel_path = (Path(line) for line in result.stdout.split())
    assert ignore_path == out / ".dockerignore" and ignore_path.read_text() == DOCKERIGNORE
    # golem_apps is installed from this checkout, not an index: its wheel goes along.
    assert wheel_path.parent == out / "wheels"
    assert wheel_path.name == f"golem_apps-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel_path) as wheel:
        assert f'__version__ = "{__version__}"' in wheel.read("golem_apps/__init__.py").decode()
    check_build_context(out, docker_path.read_text())
    definition = json.loads(json_path.read_text())
    assert definition["name"] == "sample"
    assert json_path.name == f"sample_0.0_{node_id(definition)}.json"
    assert docker_path == out / "Dockerfile"
    assert '"golem_apps.serve", "tests.apps.sample"' in docker_path.read_text()
    # A second run refuses to overwrite the Dockerfile without --force.
    again = subprocess.run(
        [sys.executable, "-m", "golem_apps.appdef", "tests.apps.sample", "--out", str(out),
         "--dockerfile"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode == 2
    assert again.stderr.strip().endswith("exists; pass --force to overwrite it")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no_such_module_xyz"], "cannot import module 'no_such_module_xyz'"),
        (["tests.apps.sample:provider"], "is a Provider, not a golem_apps.Requestor"),
        (["tests.apps.sample:nothing"], "has no attribute 'nothing'"),
        ([], "the following arguments are required"),
    ],
)
def test_cli_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_docs_dockerfile_is_the_generated_one() -> None:
    """docs/Dockerfile is what ``appdef --dockerfile`` writes for a module ``myapp``."""
    app = Requestor("myapp", image="me/myapp", tag="1.0")
    assert (ROOT / "docs" / "Dockerfile").read_text() == dockerfile("myapp", app)


def test_pyproject_fills_only_what_the_requestor_left_out(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        "[project]\n"
        'name = "mandel-app"\n'
        'version = "2.5"\n'
        'description = "From pyproject"\n'
        'license = {text = "Apache-2.0"}\n'
        'authors = [{name = "Ada", email = "ada@example.org"}, {name = "Bob"}]\n'
    )
    info = with_pyproject(Requestor("mandel", description="Given").info, pyproject)
    definition = app_definition(info)
    assert definition["version"] == "2.5"
    assert definition["description"] == "Given"  # given to Requestor(...): kept
    assert definition["author"] == "Ada <ada@example.org>, Bob"
    assert definition["license"] == "Apache-2.0"


def test_cli_pyproject_option(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nversion = "3.1"\n')
    assert main(["tests.apps.sample", "--out", str(tmp_path), "--pyproject", str(pyproject)]) == 0
    (written,) = tmp_path.glob("sample_3.1_*.json")
    assert written.name == f"sample_3.1_{node_id(json.loads(written.read_text()))}.json"
    pyproject.write_text("[project\n")
    assert main(["tests.apps.sample", "--out", str(tmp_path), "--pyproject", str(pyproject)]) == 2


def check_build_context(context: Path, text: str) -> None:
    """What ``docker build`` would do with ``context``, read off the Dockerfile (no engine here).

    Every COPY has a source that exists (the others are optional wildcards),
    nothing it needs is in .dockerignore, the dependencies are installed
    before the app's code is copied (the cached layer), and the folder pip is
    pointed at holds a golem_apps it can install without an index.
    """
    ignored = [
        line for line in (context / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    steps = list(instructions(text))
    copies = [args.split() for keyword, args in steps if keyword == "COPY"]
    assert copies[-1] == [".", "/app"], "the app's code is copied last"
    deps = context.parent / "image-deps"
    deps.mkdir()
    for *sources, destination in copies[:-1]:
        assert destination == "/tmp/deps/"
        found = []
        for source in sources:
            matches = sorted(context.glob(source))
            assert matches or any(c in source for c in "*?["), f"COPY {source}: not in the context"
            for match in matches:
                assert not any(fnmatch.fnmatch(match.name, pattern) for pattern in ignored)
                found.append(match)
                for path in match.iterdir() if match.is_dir() else [match]:  # a folder's content
                    shutil.copy2(path, deps / path.name)
        assert found, "a COPY without any source fails the build"
    pip_install = next(
        i for i, (keyword, args) in enumerate(steps) if keyword == "RUN" and "pip install" in args
    )
    assert pip_install < steps.index(("COPY", ". /app")), "pip runs again on every code edit"
    assert "--find-links /tmp/deps" in steps[pip_install][1]
    # pip, offline, finds the pinned golem_apps in what the COPY brought.
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-index", "--no-deps", "--quiet",
         "--find-links", str(deps), "-d", str(context.parent / "download"),
         f"golem_apps=={__version__}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert download.returncode == 0, download.stderr


def test_docs_dockerignore_is_the_generated_one() -> None:
    assert (ROOT / "docs" / "dockerignore").read_text() == DOCKERIGNORE
