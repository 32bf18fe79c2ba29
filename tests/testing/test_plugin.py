"""The pytest plugin: registered through ``pytest11``; its fixtures, in a scratch project."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

APP = """
from pathlib import Path

from golem_apps import ComputeContext, Part, Provider, Requestor, TaskContext

requestor = Requestor("scratch")
provider = Provider()


@requestor.task
def split(task: TaskContext) -> list[Part]:
    return [Part(params={"text": t}, name=t) for t in task.params["texts"]]


@provider.compute
def compute(ctx: ComputeContext) -> Path:
    out = ctx.subtask_dir / f"{ctx.params['text']}.txt"
    out.write_text(ctx.params["text"].upper())
    return out
"""

CONFTEST = """
import pytest

import scratch_app


@pytest.fixture
def golem_app():
    return scratch_app
"""

TESTS = """
import pytest

import scratch_app
from golem_apps.testing import run_local


def test_run_local_directly():
    result = run_local(scratch_app.requestor, scratch_app.provider, params={"texts": ["a"]})
    assert (result.outputs_dir / "a.txt").read_text() == "A"


def test_golem_run(golem_run, golem_work_dir):
    result = golem_run(params={"texts": ["x", "y"]}, providers=2)
    assert sorted(p.name for p in result.outputs_dir.iterdir()) == ["x.txt", "y.txt"]
    assert result.work_dir.parent == golem_work_dir
    with pytest.raises(KeyError, match="texts"):
        golem_run(params={})


@pytest.mark.anyio
async def test_golem_requestor_client(golem_requestor_client):
    await golem_requestor_client.create_task("t1", {"texts": ["a", "b"]})
    assert await golem_requestor_client.has_pending_subtasks("t1")
    assignment = await golem_requestor_client.next_subtask("t1", "s1", "node1")
    assert assignment is not None and assignment.params == {"text": "a"}


@pytest.mark.anyio
async def test_golem_provider_client(golem_provider_client, golem_work_dir):
    output = await golem_provider_client.compute("t1", "s1", {"text": "q"})
    assert (golem_work_dir / "provider" / output).read_text() == "Q"


def test_fails_on_purpose(golem_run):
    golem_run(params={"texts": ["a"]}, timeout=0)
"""


def test_the_plugin_is_registered_through_pytest11() -> None:
    (entry,) = [e for e in entry_points(group="pytest11") if e.name == "golem_apps"]
    assert entry.value == "golem_apps.testing._plugin"


def test_a_scratch_project_tests_its_app_with_run_local_and_the_fixtures(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(scratch_app=APP, conftest=CONFTEST, test_scratch=TESTS)
    # A fresh interpreter: the plugin comes from the installed entry point alone.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*test_fails_on_purpose*", "*TimeoutError: the task did not*"])


def test_without_a_golem_app_fixture_the_error_says_what_to_define(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_missing="def test_it(golem_run):\n    golem_run()\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*define a golem_app fixture returning your app*"])
    assert result.ret != 0
