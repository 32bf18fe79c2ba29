"""The runner never does blocking file work on the event loop thread."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import FrameType

import pytest

from golem_apps.runner import run_task

#: Audit events of blocking file work.
BLOCKING = {"open", "os.mkdir", "os.listdir", "os.scandir", "os.remove", "shutil.copyfile",
            "shutil.copytree", "shutil.rmtree", "os.rename"}  # fmt: skip
RUNNER = str(Path("golem_apps") / "runner")

_watching: dict[str, object] = {}
_seen: list[str] = []


def _runner_frame(frame: FrameType | None) -> str | None:
    """Where the runner's code asked for the file work; None for others' work and imports."""
    where = None
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith("<frozen importlib"):
            return None  # loading a module (a lazy import): not the runner's file work
        if where is None and RUNNER in name:
            where = f"{Path(name).name}:{frame.f_lineno}"
        frame = frame.f_back
    return where


def _hook(event: str, args: tuple[object, ...]) -> None:
    if event not in BLOCKING or _watching.get("thread") is not threading.current_thread():
        return
    if args and (args[0] == os.devnull or isinstance(args[0], int)):
        return  # a child's stdin, or wrapping a pipe's descriptor: never blocks
    where = _runner_frame(sys._getframe(1))
    if where is not None:
        _seen.append(f"{event} {args[0]!r} at {where}")


sys.addaudithook(_hook)  # audit hooks cannot be removed: it stays idle outside these tests


@pytest.fixture
def watch_loop_thread() -> object:
    _seen.clear()
    _watching["thread"] = threading.current_thread()  # anyio's pytest plugin runs the loop here
    yield _seen
    _watching.clear()


@pytest.mark.anyio
@pytest.mark.parametrize("in_process", [True, False])
async def test_no_blocking_file_work_on_the_loop(
    tmp_path: Path, watch_loop_thread: list[str], in_process: bool
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("shipped")
    result = await run_task(
        "tests.apps.runner_app",
        params={"parts": [{"name": "r", "resource": "in.txt"}, {"name": "t", "text": "t"}]},
        inputs=[source],
        providers=2,
        in_process=in_process,
        out=tmp_path / "out",
    )
    assert result.parts == 2
    assert watch_loop_thread == []
