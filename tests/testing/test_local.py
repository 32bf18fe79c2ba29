"""``run_local`` and its async twin: a whole task in this process, the app's own exceptions."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from golem_apps import ComputeContext, Part, Provider, Requestor, TaskContext, TaskFailed
from golem_apps.testing import run_local, run_local_async

requestor = Requestor("local")
provider = Provider()
SEEN_MAX_SUBTASKS: list[int] = []


@requestor.task
def split(task: TaskContext) -> list[Part]:
    SEEN_MAX_SUBTASKS.append(task.max_subtasks)
    return [Part(params={"text": t}, name=t) for t in task.params["texts"]]


@provider.compute
async def compute(ctx: ComputeContext) -> Path:
    text = ctx.params["text"]
    if text == "boom":
        raise ValueError(f"cannot shout {text!r}")
    if text == "hang":
        await anyio.sleep(60)
    out = ctx.subtask_dir / f"{text}.txt"
    out.write_text(text.upper())
    return out


def test_a_task_runs_and_its_outputs_are_there(tmp_path: Path) -> None:
    SEEN_MAX_SUBTASKS.clear()
    result = run_local(
        requestor, provider, params={"texts": ["a", "b"]}, max_subtasks=2, work_dir=tmp_path
    )
    assert sorted(p.name for p in result.outputs_dir.iterdir()) == ["a.txt", "b.txt"]
    assert (result.outputs_dir / "b.txt").read_text() == "B"
    assert result.failures == () and result.parts == 2
    assert result.status is not None and result.status.state == "finished"
    assert result.status.parts["done"] == 2
    assert SEEN_MAX_SUBTASKS == [2]  # max_subtasks reached CreateTask


def test_a_handlers_exception_is_raised_as_itself(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="'texts'") as split_failed:
        run_local(requestor, provider, params={}, work_dir=tmp_path / "1")
    assert any("CreateTask refused" in note for note in split_failed.value.__notes__)
    with pytest.raises(ValueError, match="cannot shout 'boom'") as compute_failed:
        run_local(requestor, provider, params={"texts": ["a", "boom"]}, work_dir=tmp_path / "2")
    # Its own traceback: the frame that raised is the app's.
    traceback = compute_failed.value.__traceback__
    assert traceback is not None
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    assert traceback.tb_frame.f_code.co_name == "compute"


def test_refusals_raise_task_failed_and_bad_arguments_value_error(tmp_path: Path) -> None:
    # Too many parts for max_subtasks: the engine refuses; no handler raised.
    with pytest.raises(TaskFailed, match=r"CreateTask refused: .*max_subtasks"):
        run_local(requestor, provider, params={"texts": ["a", "b"]}, max_subtasks=1)
    with pytest.raises(ValueError, match="providers must be at least 1"):
        run_local(requestor, provider, params={"texts": ["a"]}, providers=0)
    with pytest.raises(ValueError, match=r"has no @provider\.compute handler"):
        run_local(requestor, Provider(), params={"texts": ["a"]}, work_dir=tmp_path)


def test_a_run_longer_than_its_timeout_raises_timeout_error(tmp_path: Path) -> None:
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.5 s"):
        run_local(requestor, provider, params={"texts": ["hang"]}, timeout=0.5, work_dir=tmp_path)


@pytest.mark.anyio
async def test_the_async_twin_and_the_sync_one_in_a_loop(tmp_path: Path) -> None:
    result = await run_local_async(requestor, provider, params={"texts": ["x"]}, work_dir=tmp_path)
    assert (result.outputs_dir / "x.txt").read_text() == "X"
    with pytest.raises(RuntimeError, match="await run_local_async"):
        run_local(requestor, provider, params={"texts": ["x"]})
