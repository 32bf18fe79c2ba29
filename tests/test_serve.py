"""``python -m golem_apps.serve`` as a node starts it: real subprocesses on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from grpclib.exceptions import GRPCError

from golem_apps import ProviderClient, RequestorClient, VerifyResult

from .conftest import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(*args: str, cwd: Path = ROOT) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "golem_apps.serve", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.mark.anyio
async def test_provider_serves_one_compute_and_exits_zero(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    process = serve("tests.apps.sample", "provider", str(port), "--work-dir", str(tmp_path))
    processes.append(process)
    async with await ProviderClient.connect(port=port, timeout=15) as client:
        output = await client.compute("t", "s1", {"text": "abc"})
    assert process.wait(timeout=10) == 0
    assert (tmp_path / output).read_text() == "ABC"


@pytest.mark.anyio
@pytest.mark.parametrize("tracebacks", [False, True])
async def test_failing_compute_exits_non_zero(
    tmp_path: Path, processes: list[subprocess.Popen[str]], tracebacks: bool
) -> None:
    port = free_port()
    extra = ["--tracebacks"] if tracebacks else []
    process = serve("tests.apps.sample", "provider", str(port), "--work-dir", str(tmp_path), *extra)
    processes.append(process)
    async with await ProviderClient.connect(port=port, timeout=15) as client:
        with pytest.raises(GRPCError, match="asked to fail") as error:
            await client.compute("t", "s1", {"fail": True})
    assert "Traceback" not in str(error.value.message)  # never on the wire
    assert process.wait(timeout=10) != 0
    _, stderr = process.communicate()
    assert "ERROR golem_apps.server: Compute failed: RuntimeError: asked to fail" in stderr
    # The log has the traceback only when asked (the local runner's children are).
    assert ("Traceback (most recent call last)" in stderr) is tracebacks


@pytest.mark.anyio
async def test_shutdown_during_a_long_compute_exits_within_2_s(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    process = serve("tests.apps.sample", "provider", str(port), "--work-dir", str(tmp_path))
    processes.append(process)
    async with (
        await ProviderClient.connect(port=port, timeout=15) as computing,
        await ProviderClient.connect(port=port, timeout=15) as stopping,
        anyio.create_task_group() as group,
    ):
        outcome: list[str] = []

        async def compute() -> None:
            try:
                await computing.compute("t", "s1", {"sleep": 120})
            except GRPCError as error:
                outcome.append(error.status.name)

        group.start_soon(compute)
        while not (tmp_path / "s1").exists():  # the computation has started
            await anyio.sleep(0.01)
        await stopping.shutdown()
        shutdown_at = time.monotonic()
    process.wait(timeout=30)
    assert time.monotonic() - shutdown_at < 2.0
    assert outcome == ["CANCELLED"]  # the computation was answered, not cut off


@pytest.mark.anyio
async def test_requestor_serves_until_shutdown_and_ignores_unknown_flags(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    process = serve(
        "tests.apps.sample", "--work-dir", str(tmp_path), "requestor", str(port),
        "--log-level", "info", "--dev-mode", "1",
    )  # fmt: skip
    processes.append(process)
    async with await RequestorClient.connect(port=port, timeout=15) as client:
        await client.create_task("t", {"texts": ["a"]})
        assert await client.has_pending_subtasks("t")
        await client.shutdown()
    assert process.wait(timeout=10) == 0
    _, stderr = process.communicate()
    assert "ignoring unknown arguments: --dev-mode 1" in stderr


@pytest.mark.anyio
async def test_both_roles_with_relative_work_dirs(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    """``--work-dir ./task-work`` as the docs' home page has it: a subtask end to end."""
    for name in ("requestor-work", "task-work"):
        (tmp_path / name).mkdir()
    requestor_port, provider_port = free_port(), free_port()
    processes.append(
        serve("tests.apps.sample", "requestor", str(requestor_port), "--work-dir",
              "./requestor-work", cwd=tmp_path)
    )  # fmt: skip
    processes.append(
        serve("tests.apps.sample", "provider", str(provider_port), "--work-dir", "./task-work",
              cwd=tmp_path)
    )  # fmt: skip
    async with await RequestorClient.connect(port=requestor_port, timeout=15) as requestor:
        await requestor.create_task("t", {"texts": ["abc"]})
        assignment = await requestor.next_subtask("t", "s1", "node")
        assert assignment is not None
        async with await ProviderClient.connect(port=provider_port, timeout=15) as provider:
            output = await provider.compute("t", "s1", assignment.params)
        assert processes[1].wait(timeout=10) == 0
        assert output == "s1/result.txt"
        # The node carries the result over into the requestor's subtask_outputs.
        outputs = tmp_path / "requestor-work" / "t" / "subtask_outputs" / "s1"
        outputs.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "task-work" / output, outputs / "result.txt")
        verdict = await requestor.verify("t", "s1")
        assert verdict.result is VerifyResult.SUCCESS, verdict.reason
        await requestor.shutdown()
    assert processes[0].wait(timeout=10) == 0
    merged = tmp_path / "requestor-work" / "t" / "task_outputs" / "result.txt"
    assert merged.read_text() == "ABC"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["no_such_module_xyz", "provider", "0"], "cannot import module 'no_such_module_xyz'"),
        (["tests.apps.sample:nothing", "provider", "0"], "has no attribute 'nothing'"),
        (["tests.apps.sample", "worker", "0"], "invalid choice: 'worker'"),
        (["tests.apps.sample", "provider", "port"], "invalid int value: 'port'"),
        (["tests.apps.sample:requestor", "provider", "0"], "is a Requestor, not"),
        (["tests.apps.sample", "requestor", "0", "--work-dir", "/no/such/dir"], "does not exist"),
        (["tests.apps.sample", "requestor"], "the following arguments are required: port"),
    ],
    ids=["module", "attribute", "role", "port", "wrong-type", "work-dir", "missing-port"],
)
def test_bad_usage_is_one_line_on_stderr_and_exit_2(
    args: list[str], needle: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "golem_apps.serve", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert lines[0].startswith("golem_apps.serve: error:")


def test_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "golem_apps.serve", "tests.apps.sample", "requestor",
             str(port), "--work-dir", str(tmp_path)],
            cwd=ROOT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
