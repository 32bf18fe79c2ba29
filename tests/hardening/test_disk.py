"""Disk full or unwritable work dir while merging: a clear status, no half-written
file in task_outputs, and the task proceeds once space is back.

The work dir is a small tmpfs mounted for the test (the machine's root runs the
tests); filling it gives real ENOSPC, remounting it read-only real EROFS.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from golem_apps import ProviderClient, serve_provider
from golem_apps.constants import SUBTASK_OUTPUTS_DIR, TASK_OUTPUTS_DIR
from golem_apps.proto import golem_task_api as api

from ..conftest import ROOT
from . import apps
from .helpers import live_requestor

pytestmark = pytest.mark.anyio

KiB = 1024
RESULT_SIZE = 400 * KiB


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "3m") -> Iterator[Path]:
    path.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs: run the tests as root (as CI and this image do)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """Fill the file system until ENOSPC, then free ``leave`` bytes."""
    filler = folder / "filler"
    with filler.open("wb") as file:
        try:
            while True:
                file.write(b"\0" * (64 * KiB))
                file.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    os.truncate(filler, max(filler.stat().st_size - leave, 0))
    return filler


def put_result(work: Path, task_id: str, subtask_id: str, content: bytes) -> Path:
    folder = work / task_id / SUBTASK_OUTPUTS_DIR / subtask_id
    folder.mkdir(parents=True)
    path = folder / f"{subtask_id}.bin"
    path.write_bytes(content)
    return path


def check_outputs(work: Path, task_id: str, sources: dict[str, bytes]) -> list[str]:
    """Every file in task_outputs is one whole result: no half-written file, no temp."""
    names = []
    for path in (work / task_id / TASK_OUTPUTS_DIR).iterdir():
        data = path.read_bytes()
        whole = data in sources.values()
        assert whole, f"{path.name}: {len(data)} bytes, not a whole result"
        names.append(path.name)
    return sorted(names)


async def test_disk_full_while_merging_then_recovery(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "work") as work, contextlib.ExitStack() as stack:
        async with live_requestor(apps.requestor, work) as live:
            stub = live.stub
            await stub.create_task(api.CreateTaskRequest(task_id="t", task_params_json='{"n": 2}'))
            # The results on a file system of their own: the merge cannot link them
            # into task_outputs (EXDEV), so it copies them, and the copies fill the disk.
            results = stack.enter_context(small_tmpfs(work / "t" / SUBTASK_OUTPUTS_DIR))
            sources = {}
            for index in range(2):
                subtask_id = f"s{index}"
                await stub.next_subtask(api.NextSubtaskRequest(task_id="t", subtask_id=subtask_id))
                sources[subtask_id] = bytes([65 + index]) * RESULT_SIZE
                put_result(work, "t", subtask_id, sources[subtask_id])
            assert results.stat().st_dev != work.stat().st_dev
            first = await stub.verify(api.VerifyRequest(task_id="t", subtask_id="s0"))
            assert first.result == api.VerifyReplyVerifyResult.SUCCESS

            # The last Verify merges: the full disk hits it.
            filler = fill(work, leave=RESULT_SIZE // 2)
            with pytest.raises(GRPCError) as info:
                await stub.verify(api.VerifyRequest(task_id="t", subtask_id="s1"))
            message = info.value.message or ""
            assert info.value.status is Status.RESOURCE_EXHAUSTED, info.value
            assert "disk full" in message and "No space left on device" in message, message
            assert "Traceback" not in message
            assert len(check_outputs(work, "t", sources)) < 2
            assert await live.healthy()

            # Space is back: the same Verify now succeeds, and the outputs are whole.
            filler.unlink()
            again = await stub.verify(api.VerifyRequest(task_id="t", subtask_id="s1"))
            assert again.result == api.VerifyReplyVerifyResult.SUCCESS, again
            assert len(check_outputs(work, "t", sources)) == 2
            pending = await stub.has_pending_subtasks(api.HasPendingSubtasksRequest(task_id="t"))
            assert not pending.has_pending_subtasks


async def test_create_task_on_a_full_disk(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "work") as work:
        async with live_requestor(apps.requestor, work) as live:
            filler = fill(work, leave=0)
            with pytest.raises(GRPCError) as info:
                await live.stub.create_task(
                    api.CreateTaskRequest(task_id="t", task_params_json=json.dumps({"n": 3000}))
                )
            assert info.value.status is Status.RESOURCE_EXHAUSTED, info.value
            assert "disk full" in (info.value.message or "")
            assert await live.healthy()
            filler.unlink()
            await live.stub.create_task(
                api.CreateTaskRequest(task_id="t2", task_params_json=json.dumps({"n": 3}))
            )


@pytest.mark.slow
async def test_unwritable_task_dir_while_merging_then_recovery(python: str, tmp_path: Path) -> None:
    """The requestor runs without root's power to ignore file modes (as in its container)."""
    work = tmp_path / "work"
    work.mkdir()
    if os.geteuid() != 0:
        pytest.fail("this test drops root's file-mode override: run the tests as root")
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
        ["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
         python, "-m", "golem_apps.serve", "tests.hardening.apps", "requestor", "0",
         "--work-dir", str(work)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await anyio.to_thread.run_sync(proc.stdout.readline)
        port = int(line.strip().rsplit(":", 1)[1])
        channel = Channel("127.0.0.1", port)
        stub = api.RequestorAppStub(channel)
        try:
            await stub.create_task(api.CreateTaskRequest(task_id="t", task_params_json='{"n": 2}'))
            sources = {}
            for index in range(2):
                subtask_id = f"s{index}"
                await stub.next_subtask(api.NextSubtaskRequest(task_id="t", subtask_id=subtask_id))
                sources[subtask_id] = bytes([65 + index]) * 1000
                put_result(work, "t", subtask_id, sources[subtask_id])
            await stub.verify(api.VerifyRequest(task_id="t", subtask_id="s0"))
            task_dir, outputs = work / "t", work / "t" / TASK_OUTPUTS_DIR
            task_dir.chmod(0o555)
            outputs.chmod(0o555)
            with pytest.raises(GRPCError) as info:
                await stub.verify(api.VerifyRequest(task_id="t", subtask_id="s1"))
            message = info.value.message or ""
            assert info.value.status is Status.INTERNAL, info.value
            assert "Permission denied" in message, message
            assert "Traceback" not in message
            assert check_outputs(work, "t", sources) == []
            task_dir.chmod(0o755)
            outputs.chmod(0o755)
            again = await stub.verify(api.VerifyRequest(task_id="t", subtask_id="s1"))
            assert again.result == api.VerifyReplyVerifyResult.SUCCESS, again
            assert len(check_outputs(work, "t", sources)) == 2
        finally:
            channel.close()
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_provider_result_on_a_full_disk(tmp_path: Path) -> None:
    """The compute handler's write fails: a clear status and a failed exit, nothing half-done."""
    with small_tmpfs(tmp_path / "task", size="1m") as work:
        fill(work, leave=0)
        async with serve_provider(apps.provider, work_dir=work, port=0) as server:
            client = await ProviderClient.connect("127.0.0.1", server.port, timeout=10)
            async with client:
                with pytest.raises(GRPCError) as info:
                    await client.compute("t", "s1", {})
            assert await server.wait() == 1
        assert info.value.status is Status.RESOURCE_EXHAUSTED, info.value
        assert "disk full" in (info.value.message or "")
