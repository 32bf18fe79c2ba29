"""An app for the engine tests: a base part, parts depending on it, a picky verify."""

from __future__ import annotations

from collections.abc import Iterator

from golem_apps import Part, Requestor, TaskContext, Verdict, VerifyContext, VerifyResult

requestor = Requestor("engine-test", image="golem/engine-test", tag="1.0")


@requestor.task(max_retries=1000)
def split(task: TaskContext) -> Iterator[Part]:
    """A "base" part, then ``parts`` parts; every third one needs base's result."""
    yield Part(params={"text": "base"}, name="base")
    for i in range(int(task.params.get("parts", 12))):
        depends = ["base"] if i % 3 == 0 else []
        yield Part(params={"text": f"t{i}"}, name=f"p{i}", depends_on=depends)


@requestor.verify
def verify(result: VerifyContext) -> Verdict:
    """A result starting with "bad" fails; any other non-empty one passes."""
    text = result.result_path.read_text()
    if text.startswith("bad"):
        return Verdict(VerifyResult.FAILURE, f"part {result.part_name} is bad")
    return Verdict(VerifyResult.SUCCESS if text else VerifyResult.FAILURE)
