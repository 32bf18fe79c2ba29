"""The Dockerfile's ENTRYPOINT, run as a node runs the container (no Docker engine needed).

The command line is parsed from the Dockerfile that ``appdef --dockerfile``
writes; the node appends ``requestor PORT`` or ``provider PORT`` (and, in
development mode, more flags). Only what a container provides is substituted:
the interpreter, the app folder on PYTHONPATH (``COPY . /app``) and the
mounted work dir.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from golem_apps import ProviderClient, RequestorClient
from golem_apps.appdef import CONTAINER_WORK_DIR, dockerfile
from golem_apps.proto.grpc.health.v1 import (
    HealthCheckRequest,
    HealthCheckResponseServingStatus,
    HealthStub,
)

from .conftest import ROOT

pytestmark = pytest.mark.anyio


def instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, continuations joined."""
    logical = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not logical:
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        if logical.strip():
            keyword, _, rest = logical.strip().partition(" ")
            yield keyword.upper(), rest.strip()
        logical = ""


def parse_env(args: str) -> dict[str, str]:
    """ENV key=value pairs."""
    return dict(item.split("=", 1) for item in shlex.split(args))


@pytest.fixture
def image_spec() -> tuple[list[str], dict[str, str], str | None]:
    """The ENTRYPOINT, the ENV and the USER of the sample app's Dockerfile."""
    entrypoint: list[str] = []
    env: dict[str, str] = {}
    user = None
    for keyword, args in instructions(dockerfile("tests.apps.sample")):
        if keyword == "ENTRYPOINT":
            entrypoint = json.loads(args)  # the exec form: no shell in between
        elif keyword == "ENV":
            env.update(parse_env(args))
        elif keyword == "USER":
            user = args
    return entrypoint, env, user


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_image_runs_as_non_root_and_serves_on_all_interfaces(
    image_spec: tuple[list[str], dict[str, str], str | None],
) -> None:
    entrypoint, env, user = image_spec
    assert entrypoint[:4] == ["python", "-m", "golem_apps.serve", "tests.apps.sample"]
    options = entrypoint[4:]
    assert options[options.index("--host") + 1] == "0.0.0.0"
    assert options[options.index("--work-dir") + 1] == CONTAINER_WORK_DIR
    assert user is not None and user.split(":")[0] not in ("", "0", "root")
    # Nothing written at run time outside /golem/work and /tmp.
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"].startswith("/tmp")


def test_run_instructions_are_valid_shell() -> None:
    runs = [args for keyword, args in instructions(dockerfile("myapp")) if keyword == "RUN"]
    assert runs
    for script in runs:
        result = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
        assert result.returncode == 0, (script, result.stderr)


def node_command(entrypoint: list[str], work_dir: Path, *appended: str) -> list[str]:
    """The container's argv with the host's interpreter and work dir in place of the image's."""
    argv = [sys.executable if entrypoint[0] == "python" else entrypoint[0], *entrypoint[1:]]
    argv = [str(work_dir) if arg == CONTAINER_WORK_DIR else arg for arg in argv]
    return [*argv, *appended]


def start(
    image_spec: tuple[list[str], dict[str, str], str | None], work_dir: Path, *appended: str
) -> subprocess.Popen[str]:
    entrypoint, image_env, _ = image_spec
    env = {**os.environ, **image_env, "PYTHONPATH": str(ROOT)}  # ROOT stands for /app
    return subprocess.Popen(
        node_command(entrypoint, work_dir, *appended),
        cwd=work_dir, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


async def assert_serving(port: int) -> None:
    client = await RequestorClient.connect("127.0.0.1", port, timeout=15.0)
    try:
        reply = await HealthStub(client.channel).check(HealthCheckRequest(service=""))
        assert reply.status == HealthCheckResponseServingStatus.SERVING
    finally:
        client.close()


async def test_requestor_entrypoint_reaches_serving(
    image_spec: tuple[list[str], dict[str, str], str | None], work_dir: Path
) -> None:
    port = free_port()
    # A node in development mode appends flags after the port: they must be accepted.
    process = start(image_spec, work_dir, "requestor", str(port), "--log-level", "DEBUG")
    try:
        await assert_serving(port)
        async with await RequestorClient.connect("127.0.0.1", port) as client:
            assert await client.run_benchmark() == 42.0  # the sample app answers
            await client.shutdown()
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate(timeout=15)
    assert "Traceback" not in stderr
    assert f"0.0.0.0:{port}" in stderr  # the DEBUG log flag took effect; all interfaces


async def test_provider_entrypoint_reaches_serving_and_computes(
    image_spec: tuple[list[str], dict[str, str], str | None], work_dir: Path
) -> None:
    port = free_port()
    (work_dir / "subtask_inputs").mkdir()  # the node creates only this one
    process = start(image_spec, work_dir, "provider", str(port))
    try:
        await assert_serving(port)
        async with await ProviderClient.connect("127.0.0.1", port) as client:
            output = await client.compute("t1", "s1", {"text": "node"})
        assert (work_dir / output).read_text() == "NODE"
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=15)
