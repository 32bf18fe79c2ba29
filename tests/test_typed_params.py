"""Typed handler params: validated with pydantic, errors name the fields, objects become JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from pydantic import BaseModel
from typing_extensions import TypedDict as ExtTypedDict

from golem_apps import (
    ComputeContext,
    HandlerError,
    Part,
    Provider,
    ProviderClient,
    Requestor,
    RequestorClient,
    TaskContext,
    serve_provider,
    serve_requestor,
)
from golem_apps._handlers import to_part
from tests.apps import typed as typed_app

from .conftest import ROOT

pytestmark = pytest.mark.anyio


async def test_task_params_are_validated_and_parts_serialized(work_dir: Path) -> None:
    async with (
        serve_requestor(typed_app.requestor, work_dir=work_dir) as server,
        await RequestorClient.connect("127.0.0.1", server.port) as client,
    ):
        await client.create_task("t1", {"scene": "sky", "tiles": "3"})  # lax: "3" -> 3
        params = []
        for number in range(3):
            assignment = await client.next_subtask("t1", f"s{number}")
            assert assignment is not None
            params.append(assignment.params)
    assert params == [{"scene": "sky", "index": i, "scale": 1.0} for i in range(3)]


@pytest.mark.parametrize(
    ("task_params", "fields"),
    [
        ({"tiles": 2}, ["scene: Field required"]),
        ({"scene": "x", "tiles": 0}, ["tiles: Input should be greater than or equal to 1"]),
        (
            {"scene": ["x"], "tiles": "many"},
            ["scene: Input should be a valid string", "tiles: Input should be a valid integer"],
        ),
    ],
)
async def test_invalid_task_params_are_invalid_argument_naming_fields(
    work_dir: Path, task_params: dict[str, Any], fields: list[str]
) -> None:
    async with (
        serve_requestor(typed_app.requestor, work_dir=work_dir) as server,
        await RequestorClient.connect("127.0.0.1", server.port) as client,
    ):
        with pytest.raises(GRPCError) as caught:
            await client.create_task("t1", task_params)
        # The task was not created: the same id is free again.
        await client.create_task("t1", {"scene": "ok", "tiles": 1})
    assert caught.value.status == Status.INVALID_ARGUMENT
    message = caught.value.message or ""
    assert message.startswith("task_params_json does not match Render: ")
    for field in fields:
        assert field in message
    assert "Traceback" not in message


async def test_compute_params_are_validated(work_dir: Path) -> None:
    async with serve_provider(typed_app.provider, work_dir=work_dir) as server:
        async with await ProviderClient.connect("127.0.0.1", server.port) as client:
            output = await client.compute("t", "s", {"scene": "sea", "index": 4, "scale": 0.5})
        assert await server.wait() == 0
    assert (work_dir / output).read_text() == "sea:4:1.0"


async def test_invalid_compute_params_are_invalid_argument(work_dir: Path) -> None:
    async with serve_provider(typed_app.provider, work_dir=work_dir) as server:
        async with await ProviderClient.connect("127.0.0.1", server.port) as client:
            with pytest.raises(GRPCError) as caught:
                await client.compute("t", "s", {"scene": "sea", "index": "four"})
        assert await server.wait() == 1  # a failed request: non-zero exit
    assert caught.value.status == Status.INVALID_ARGUMENT
    message = caught.value.message or ""
    assert message.startswith("subtask_params_json does not match Tile: ")
    assert "index: Input should be a valid integer" in message
    assert "scale: Field required" in message


class Point(ExtTypedDict):
    x: int
    y: int


@dataclass
class Box:
    width: int


class Size(BaseModel):
    width: int


@pytest.mark.parametrize(
    ("params_type", "given", "expected"),
    [
        (Point, {"x": "1", "y": 2}, {"x": 1, "y": 2}),
        (Box, {"width": 3}, Box(3)),
        (Size, {"width": 3}, Size(width=3)),
    ],
)
def test_typeddict_dataclass_and_model_are_all_accepted(
    params_type: type, given: dict[str, Any], expected: object
) -> None:
    provider = Provider()
    seen: list[object] = []

    @provider.compute(params=params_type)
    def compute(ctx: ComputeContext, params: Any) -> Path:
        raise AssertionError("not called")

    (value,) = provider.handler_args("compute", given, "subtask_params_json")
    seen.append(value)
    assert seen == [expected]
    assert provider.params_type("compute") is params_type


def test_params_type_is_read_from_the_annotation() -> None:
    requestor = Requestor("x")

    @requestor.task
    def split(task: TaskContext, params: Box) -> list[Part]:
        return []

    assert requestor.params_type("task") is Box
    assert requestor.handler_args("task", {"width": 1}, "task_params_json") == (Box(1),)


def test_untyped_handlers_get_no_extra_argument() -> None:
    requestor = Requestor("x")

    @requestor.task
    def split(task: TaskContext) -> list[Part]:
        return []

    assert requestor.params_type("task") is None
    assert requestor.handler_args("task", {"anything": 1}, "task_params_json") == ()


class PlainTypedDict(TypedDict):
    x: int


def _two(ctx: ComputeContext, params) -> Path:  # type: ignore[no-untyped-def]
    raise AssertionError


def _one(ctx: ComputeContext) -> Path:
    raise AssertionError


@pytest.mark.parametrize(
    ("func", "params", "message"),
    [
        (_two, None, r"must take exactly \(ctx\), or \(ctx, params\) with params annotated"),
        (_one, Box, r"handler must take exactly \(ctx, params\)"),
        (_two, dict, "must be a dataclass, a TypedDict or a pydantic model"),
        (_two, PlainTypedDict, "needs typing_extensions.TypedDict"),
    ],
)
def test_bad_params_declarations_fail_at_decoration(
    func: Any, params: type | None, message: str
) -> None:
    with pytest.raises(HandlerError, match=message):
        Provider().add_compute(func, params=params)


def test_part_params_objects_become_json_objects() -> None:
    assert to_part(Part(params=Size(width=2), name="a")) == Part(params={"width": 2}, name="a")
    assert to_part(Box(5)) == Part(params={"width": 5})
    plain = Part(params={"width": 1})
    assert to_part(plain) is plain
    with pytest.raises(TypeError, match="not int"):
        to_part(7)
    with pytest.raises(TypeError, match="part params must be a dict, a dataclass"):
        to_part(Part(params=[1, 2]))
    assert json.dumps(to_part(Box(1)).params) == '{"width": 1}'


def test_pydantic_stays_unloaded_until_a_typed_request(tmp_path: Path) -> None:
    """Importing an app (typed or not) does not import pydantic; the provider path stays light."""
    code = (
        "import sys\n"
        "import tests.apps.sample\n"
        "assert 'pydantic' not in sys.modules, 'untyped app loaded pydantic'\n"
        "assert 'golem_apps._typed' not in sys.modules, 'untyped app loaded _typed'\n"
        "from golem_apps import Provider\n"
        "from dataclasses import dataclass\n"
        "@dataclass\n"
        "class P:\n"
        "    n: int\n"
        "provider = Provider()\n"
        "@provider.compute\n"
        "def compute(ctx, params: P): ...\n"
        "assert provider.params_type('compute') is P\n"
        "assert 'pydantic' not in sys.modules, 'decoration loaded pydantic'\n"
        "assert provider.handler_args('compute', {'n': '1'}, 'f') == (P(1),)\n"
        "assert 'pydantic' in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
