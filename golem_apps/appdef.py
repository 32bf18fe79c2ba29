"""``python -m golem_apps.appdef MODULE[:ATTR] [--out DIR] [--dockerfile]``: app definition.

A Golem node learns about an app from a JSON app definition in its apps folder
(task-api spec §7). This command builds it from the metadata given to
``Requestor(...)`` and writes it as ``<name>_<version>_<id>.json``, where the
id is the node's own: the hex blake2b digest (digest size 16) of ``json.dumps``
of the definition with its keys in the spec's order and defaults filled in.
With ``--dockerfile`` it also writes a ``Dockerfile`` whose ENTRYPOINT serves
the app the way a node starts it (see the "Deploying" page of the docs).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._cli import Parser, is_file_spec, load_app
from ._exceptions import ConfigError, InvalidArgument, UsageError
from ._requestor import AppInfo, Requestor
from ._validate import safe_name
from .constants import DOCKER_CPU_ENV_ID, DOCKER_GPU_ENV_ID

PROG = "golem_apps.appdef"

#: The app definition's keys in the order the node re-serializes them, with
#: their defaults (``None``: required, no default).
DEFINITION_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("name", None),
    ("requestor_env", None),
    ("requestor_prereq", None),
    ("max_benchmark_score", None),
    ("version", "0.0"),
    ("description", ""),
    ("author", ""),
    ("license", ""),
    ("market_strategy", "brass"),
)

#: The values ``market_strategy`` may take.
MARKET_STRATEGIES = ("brass", "wasm")

#: Where the node mounts the work dir inside the container.
CONTAINER_WORK_DIR = "/golem/work"

_DOCKERFILE = """\
# The Docker image of the golem_apps app `{module}`.
# Written by `golem-apps appdef {module} --dockerfile`; edit freely.
#
# Build it in the folder that holds the app's module (with requirements.txt,
# if the app has one, and the wheels/ folder appdef wrote), with the image and
# tag given to Requestor(image=, tag=):
#
#     docker build -t {image}:{tag} .
#
# The node runs the container with `requestor <port>` or `provider <port>`
# appended to the ENTRYPOINT, as the host user's uid, with the node's work dir
# mounted read-write at /golem/work. The app writes only there and under /tmp.
FROM python:3.11-slim

# No bytecode is written at run time (the image is read-only for the app's
# uid); HOME=/tmp gives libraries a writable home whatever uid the node uses.
ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    HOME=/tmp \\
    PYTHONPATH=/app \\
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The dependencies first, in a layer of their own: editing the app's code does
# not re-run pip. wheels/ holds the golem_apps wheel (appdef puts it there when
# golem_apps is not installed from a package index); the Dockerfile itself is
# listed so that the COPY has a source when neither of the others exists.
COPY Dockerfile requirements.tx[t] wheel[s] /tmp/deps/
# --build-arg GOLEM_APPS=<requirement> picks another version or extras; the
# default is pinned (hadolint's DL3013 cannot see through the variable).
ARG GOLEM_APPS="golem_apps[typed]=={version}"
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --find-links /tmp/deps "$GOLEM_APPS" \\
    && if [ -f /tmp/deps/requirements.txt ]; then \\
        pip install --no-cache-dir -r /tmp/deps/requirements.txt; \\
    fi \\
    && rm -rf /tmp/deps \\
    && useradd --uid 1000 --no-create-home --home-dir /tmp golem \\
    && mkdir -p /golem/work \\
    && chown golem /golem/work

# Then the app's code (.dockerignore keeps virtualenvs, work dirs and results
# out), compiled now since nothing may be written next to it at run time.
COPY . /app
RUN python -m compileall -q /app

# A non-root user when run by hand; a node overrides it with the host's uid.
USER 1000
WORKDIR /golem/work
# The ports a node uses by default: requestor 50005, provider 50006.
EXPOSE 50005 50006

# The node appends `requestor <port>` or `provider <port>` (and, in
# development mode, flags such as `--log-level DEBUG`).
ENTRYPOINT ["python", "-m", "golem_apps.serve", "{module}", \\
            "--host", "0.0.0.0", "--work-dir", "/golem/work"]
"""

#: What ``docker build`` leaves out of the image (written next to the Dockerfile).
DOCKERIGNORE = """\
# Not part of the image: virtualenvs, caches, VCS data, local runs and results.
.git
.venv
venv
**/__pycache__
**/*.pyc
.mypy_cache
.pytest_cache
.ruff_cache
*.egg-info
build
dist
demo_output
golem_apps_run_*
"""


def app_definition(app: Requestor | AppInfo) -> dict[str, Any]:
    """The app definition (spec §7) of a Requestor, keys in the spec's order.

    Raises ConfigError when the metadata cannot make a definition a node
    accepts (unknown market strategy, a score that is not a finite number,
    prerequisites that are not a JSON object).
    """
    info = app.info if isinstance(app, Requestor) else app
    if info.market_strategy not in MARKET_STRATEGIES:
        raise ConfigError(
            f"market_strategy must be one of {', '.join(MARKET_STRATEGIES)} "
            f"(got {info.market_strategy!r})"
        )
    try:
        score = float(info.max_benchmark_score)
    except (TypeError, ValueError):
        score = math.nan
    if not math.isfinite(score):
        raise ConfigError(
            f"max_benchmark_score must be a finite number (got {info.max_benchmark_score!r})"
        )
    prereq = info.requestor_prerequisites
    try:
        prereq = json.loads(json.dumps(prereq))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"requestor_prereq must be a JSON object: {exc}") from None
    if info.requestor_env in (DOCKER_CPU_ENV_ID, DOCKER_GPU_ENV_ID) and (
        not isinstance(prereq, dict)
        or set(prereq) != {"image", "tag"}
        or not all(isinstance(value, str) and value for value in prereq.values())
    ):
        raise ConfigError(
            f"requestor_prereq of a {info.requestor_env} app must be exactly "
            f'{{"image": ..., "tag": ...}} with non-empty strings (got {prereq!r})'
        )
    for key in ("name", "version", "requestor_env", "description", "author", "license"):
        value = getattr(info, key)
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string (got {type(value).__name__})")
    return {
        "name": info.name,
        "requestor_env": info.requestor_env,
        "requestor_prereq": prereq,
        "max_benchmark_score": score,
        "version": info.version,
        "description": info.description,
        "author": info.author,
        "license": info.license,
        "market_strategy": info.market_strategy,
    }


def app_id(definition: Mapping[str, Any]) -> str:
    """The app's id as a node computes it from a definition (a parsed file or ours).

    Keys are put in the spec's order with defaults for the missing optional
    ones; keys the spec does not list are left out.
    """
    normalized: dict[str, Any] = {}
    for key, default in DEFINITION_DEFAULTS:
        if key in definition:
            normalized[key] = definition[key]
        elif default is None:
            raise ConfigError(f"the app definition has no {key!r}")
        else:
            normalized[key] = default
    return hashlib.blake2b(json.dumps(normalized).encode("utf-8"), digest_size=16).hexdigest()


def definition_file_name(definition: Mapping[str, Any]) -> str:
    """``<name>_<version>_<id>.json``: the file name a node gives the definition."""
    try:
        name = safe_name(str(definition["name"]), "name")
        version = safe_name(str(definition.get("version", "0.0")), "version")
    except InvalidArgument as exc:
        raise ConfigError(f"cannot name the app definition file: {exc}") from None
    file_name = f"{name}_{version}_{app_id(definition)}.json"
    return safe_name(file_name, "app definition file name")


def write_app_definition(app: Requestor | AppInfo, out_dir: str | Path = ".") -> Path:
    """Write the app definition JSON into ``out_dir``; return the file's path."""
    definition = app_definition(app)
    path = Path(out_dir) / definition_file_name(definition)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(definition, indent=2) + "\n", encoding="utf-8")
    return path


def with_pyproject(info: AppInfo, pyproject: str | Path) -> AppInfo:
    """``info`` with the fields it leaves at their defaults taken from a pyproject.toml.

    From its ``[project]`` table: ``version``, ``description``, ``authors``
    (as ``Name <email>``, comma-separated) and ``license`` (a string or
    ``{text = ...}``). Fields given to ``Requestor(...)`` win.
    """
    import tomllib

    path = Path(pyproject)
    try:
        with path.open("rb") as file:
            project = tomllib.load(file).get("project", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(project, dict):
        raise ConfigError(f"{path}: [project] is not a table")
    found: dict[str, Any] = {}
    if isinstance(project.get("version"), str):
        found["version"] = project["version"]
    if isinstance(project.get("description"), str):
        found["description"] = project["description"]
    authors = [_person(a) for a in project.get("authors", []) if isinstance(a, dict)]
    if any(authors):
        found["author"] = ", ".join(a for a in authors if a)
    license_ = project.get("license")
    if isinstance(license_, dict):
        license_ = license_.get("text")
    if isinstance(license_, str):
        found["license"] = license_
    defaults = AppInfo(name=info.name)
    missing = {
        key: value for key, value in found.items() if getattr(info, key) == getattr(defaults, key)
    }
    return dataclasses.replace(info, **missing)


def _person(author: dict[str, Any]) -> str:
    name, email = str(author.get("name", "")), str(author.get("email", ""))
    return f"{name} <{email}>".strip() if email else name


def dockerfile(module: str, app: Requestor | AppInfo | None = None) -> str:
    """The text of a Dockerfile serving ``module``'s app as a node starts it.

    ``app`` (optional) fills in the image and tag named in its comments.
    """
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise ConfigError(f"not a module name: {module!r}")
    image, tag = "IMAGE", "TAG"
    if app is not None:
        prereq = (app.info if isinstance(app, Requestor) else app).provider_prerequisites
        image, tag = prereq.get("image", image), prereq.get("tag", tag)
    return _DOCKERFILE.format(module=module, image=image, tag=tag, version=__version__)


def own_wheel(wheels_dir: str | Path) -> Path | None:
    """Put golem_apps's wheel in ``wheels_dir`` when an image could not get it from an index.

    That is when golem_apps was installed from a local folder (a checkout,
    editable or not) or file: the wheel is copied, or built with ``pip wheel``.
    Returns its path, or None when golem_apps came from a package index (where
    the image's pip finds it too). ConfigError when its source is gone.
    """
    import shutil
    import subprocess
    from importlib.metadata import distributions
    from urllib.parse import unquote, urlparse

    # The installed one: a build's golem_apps.egg-info in the current folder
    # may come first on sys.path, without the record of where pip got it.
    found = (d.read_text("direct_url.json") for d in distributions(name="golem_apps"))
    direct = next((text for text in found if text), None)
    url = json.loads(direct).get("url", "") if direct else ""
    if not url.startswith("file:"):
        return None  # from a package index (or a VCS URL pip can fetch again)
    source = Path(unquote(urlparse(url).path))
    wheels = Path(wheels_dir)
    wheels.mkdir(parents=True, exist_ok=True)
    if source.suffix == ".whl" and source.is_file():
        return Path(shutil.copy2(source, wheels / source.name))
    if not source.exists():
        raise ConfigError(
            f"golem_apps was installed from {source}, which is gone: put its wheel in {wheels}"
        )
    before = set(wheels.glob("golem_apps-*.whl"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels),
         str(source)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise ConfigError(f"cannot build the golem_apps wheel from {source}: {last}")
    built = sorted(
        set(wheels.glob(f"golem_apps-{__version__}-*.whl")) - before
        or wheels.glob(f"golem_apps-{__version__}-*.whl")
    )
    return built[-1] if built else None


def build_parser(prog: str = f"python -m {PROG}") -> argparse.ArgumentParser:
    """The command line of ``python -m golem_apps.appdef`` (``prog`` names it in usage lines)."""
    parser = Parser(
        prog=prog,
        description="Write the app definition a Golem node loads (and, with --dockerfile, "
        "a Dockerfile serving the app) from the metadata given to Requestor(...).",
    )
    parser.add_argument(
        "app", metavar="MODULE[:ATTR]", help="module of the app; ATTR defaults to 'requestor'"
    )
    parser.add_argument("--out", default=".", help="folder to write into (default: .)")
    parser.add_argument(
        "--dockerfile",
        action="store_true",
        help="also write a Dockerfile serving the app, its .dockerignore and (when golem_apps "
        "is not from a package index) wheels/ with the golem_apps wheel; refused if a "
        "Dockerfile exists, unless --force",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing Dockerfile")
    parser.add_argument(
        "--pyproject",
        metavar="FILE",
        help="take version, description, authors and license from this pyproject.toml "
        "where Requestor(...) leaves them at their defaults",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run the command; returns the exit code. ``prog``: its name in usage and error lines."""
    try:
        args = build_parser(prog or f"python -m {PROG}").parse_args(argv)
        app = load_app(args.app, "requestor")
        if not isinstance(app, Requestor):
            raise UsageError(f"{args.app} is a {type(app).__name__}, not a golem_apps.Requestor")
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out} is not a folder")
        target = out / "Dockerfile"
        target_module = args.app.partition(":")[0]
        if is_file_spec(target_module):  # the image has the file in /app, on PYTHONPATH
            target_module = Path(target_module).stem
        docker_text = dockerfile(target_module, app) if args.dockerfile else None
        if docker_text is not None and target.exists() and not args.force:
            raise UsageError(f"{target} exists; pass --force to overwrite it")
        info = app.info if args.pyproject is None else with_pyproject(app.info, args.pyproject)
        written = [write_app_definition(info, out)]
        if docker_text is not None:
            target.write_text(docker_text, encoding="utf-8")
            written.append(target)
            ignore = out / ".dockerignore"
            if not ignore.exists():  # the user's own wins
                ignore.write_text(DOCKERIGNORE, encoding="utf-8")
                written.append(ignore)
            wheel = own_wheel(out / "wheels")
            if wheel is not None:
                written.append(wheel)
    except (UsageError, ConfigError, OSError) as exc:
        print(f"{prog or PROG}: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
