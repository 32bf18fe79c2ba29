"""The decorator registries: registration, signature checks, slots, escape hatch, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from golem_apps import (
    ComputeContext,
    HandlerError,
    Part,
    Provider,
    Requestor,
    TaskContext,
    VerifyContext,
)


def test_decorators_register_and_return_the_function_unchanged() -> None:
    requestor = Requestor("app")
    provider = Provider()

    def split(task: TaskContext) -> list[Part]:
        return []

    async def verify(result: VerifyContext) -> bool:
        return True

    def compute(ctx: ComputeContext) -> Path:
        return Path("x")

    assert requestor.task(split) is split
    assert requestor.verify(verify) is verify
    assert provider.compute(compute) is compute
    assert requestor.handler("task") is split
    assert requestor.handler("verify") is verify
    assert provider.handler("compute") is compute


def test_task_decorator_with_options() -> None:
    requestor = Requestor("app")

    @requestor.task(max_retries=7)
    def split(task: TaskContext) -> list[Part]:
        return []

    assert requestor.handler("task") is split
    assert requestor.task_options.max_retries == 7


@pytest.mark.parametrize(
    "func",
    [
        lambda: None,
        lambda a, b: None,
        lambda *, task: None,
    ],
    ids=["no-argument", "two-arguments", "keyword-only"],
)
def test_wrong_signature_fails_at_decoration(func: Any) -> None:
    requestor = Requestor("app")
    with pytest.raises(
        HandlerError, match=r"@requestor\.task handler .* must take exactly \(task\)"
    ):
        requestor.task(func)
    assert requestor.handler("task") is None


def test_benchmark_takes_no_argument() -> None:
    provider = Provider()
    with pytest.raises(HandlerError, match="no arguments"):
        provider.benchmark(lambda x: 1.0)


def test_second_handler_for_a_slot_fails() -> None:
    provider = Provider()
    provider.compute(lambda ctx: "a")
    with pytest.raises(HandlerError, match=r"@provider\.compute is already registered"):
        provider.compute(lambda ctx: "b")


def test_escape_hatch_takes_over_one_rpc() -> None:
    requestor = Requestor("app")

    async def next_subtask(request: Any, work_dir: Path) -> Any:
        return None

    assert requestor.rpc("NextSubtask")(next_subtask) is next_subtask
    assert requestor.rpcs["NextSubtask"] is next_subtask
    with pytest.raises(HandlerError, match="unknown RPC"):
        requestor.rpc("Compute")(next_subtask)
    with pytest.raises(HandlerError, match="must be an async function"):
        requestor.rpc("Verify")(lambda request, work_dir: None)
    with pytest.raises(HandlerError, match="already registered"):
        requestor.rpc("NextSubtask")(next_subtask)


def test_registries_are_independent_instances() -> None:
    first, second = Provider(), Provider()
    first.compute(lambda ctx: "a")
    assert second.handler("compute") is None


def test_requestor_needs_a_name_and_checks_retries() -> None:
    with pytest.raises(ValueError, match="name"):
        Requestor("")
    with pytest.raises(HandlerError, match="max_retries"):
        Requestor("app").task(max_retries=-1)(lambda task: [])


@pytest.mark.anyio
async def test_lifespan_from_async_generator() -> None:
    events: list[str] = []
    provider = Provider()

    @provider.lifespan
    async def lifespan(app: Provider) -> AsyncIterator[None]:
        assert app is provider
        events.append("start")
        yield
        events.append("stop")

    async with provider.run_lifespan():
        events.append("serving")
    assert events == ["start", "serving", "stop"]
    with pytest.raises(HandlerError, match="lifespan is already registered"):
        provider.lifespan(lifespan)


def test_provider_prerequisites_default_to_image_and_tag() -> None:
    info = Requestor("app", image="me/app", tag="2").info
    assert info.provider_prerequisites == {"image": "me/app", "tag": "2"}
    custom = Requestor("app", prerequisites={"image": "x", "tag": "y"}).info
    assert custom.provider_prerequisites == {"image": "x", "tag": "y"}
