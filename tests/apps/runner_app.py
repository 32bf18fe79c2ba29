"""An app for the runner's tests: each part's params say how its attempts behave.

Task params: ``{"parts": [{"name": "a", "text": "a", ...}, ...]}``. Part params:

- ``text``: the provider writes it upper-cased into ``<name>.txt``;
- ``sleep``: seconds the compute takes (it polls ``ctx.cancelled``);
- ``fail``: every compute of the part raises;
- ``slow_once``: a folder; the part's first compute writes its pid to
  ``<folder>/<name>.pid`` and then hangs (until cancelled or killed); later ones are quick;
- ``stubborn``: the slow_once hang ignores ``ctx.cancelled``;
- ``await_once``: a folder; the part's first verify answers AWAITING_DATA;
- ``await_always``: every verify answers AWAITING_DATA;
- ``reject``: every verify answers FAILURE;
- ``resource``: the name of a task input, the part's resource; compute
  writes its content upper-cased;
- ``gate``: a folder; compute writes ``<folder>/<name>.started`` and waits for
  ``<folder>/<name>.go`` before it finishes;
- ``print_kb``: compute prints that many KiB to stdout first;
- ``verify_sleep``: verify takes that long; ``MAX_VERIFYING`` records how many
  verifications ever overlapped (in-process runs).

With RUNNER_APP_SAY set in the environment, the module prints it when imported;
with RUNNER_APP_FAIL_EXIT set, the provider's lifespan fails as it ends, so its
process exits non-zero after answering Compute.
AbortTask is taken over to leave ``<work dir>/<task_id>.aborted`` behind.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from golem_apps import (
    ComputeContext,
    Part,
    Provider,
    Requestor,
    TaskContext,
    Verdict,
    VerifyContext,
    VerifyResult,
)

if os.environ.get("RUNNER_APP_SAY"):
    print(os.environ["RUNNER_APP_SAY"])

requestor = Requestor("runner-test", image="golem/runner-test")
provider = Provider()

#: How long a slow_once compute hangs at most (the tests kill or time it out long before).
HANG_SECONDS = 60.0


#: Verifications running now and the most ever seen at once (guarded by _LOCK).
VERIFYING = 0
MAX_VERIFYING = 0
_LOCK = threading.Lock()


@requestor.task(max_retries=2)
def split(task: TaskContext) -> Iterator[Part]:
    for i, spec in enumerate(task.params.get("parts", [])):
        name = spec.get("name", f"p{i}")
        resources = [spec["resource"]] if "resource" in spec else []
        yield Part(params={**spec, "name": name}, name=name, resources=resources)


def _sleep(ctx: ComputeContext, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ctx.cancelled:
        time.sleep(0.01)


@provider.lifespan
async def provider_lifespan(app: Provider) -> AsyncIterator[None]:
    yield
    if os.environ.get("RUNNER_APP_FAIL_EXIT"):
        raise RuntimeError("the provider's lifespan failed on the way out")


@provider.compute
def compute(ctx: ComputeContext) -> Path:
    p = ctx.params
    if p.get("fail"):
        raise RuntimeError(f"part {p['name']} asked to fail")
    if p.get("slow_once"):
        marker = Path(p["slow_once"]) / f"{p['name']}.pid"
        try:
            with marker.open("x") as file:
                file.write(str(os.getpid()))
        except FileExistsError:
            pass
        else:
            if p.get("stubborn"):
                time.sleep(HANG_SECONDS)  # ignores ctx.cancelled
            else:
                _sleep(ctx, HANG_SECONDS)
            raise RuntimeError("the slow attempt was not stopped")
    if p.get("gate"):
        gate = Path(p["gate"])
        (gate / f"{p['name']}.started").touch()
        while not (gate / f"{p['name']}.go").exists() and not ctx.cancelled:
            time.sleep(0.01)
    if p.get("print_kb"):
        for _ in range(p["print_kb"]):
            print("x" * 1023)
    _sleep(ctx, float(p.get("sleep", 0)))
    text = str(p.get("text", ""))
    if "resource" in p:
        text = (ctx.inputs_dir / p["resource"]).read_text()
    out = ctx.subtask_dir / f"{p['name']}.txt"
    out.write_text(text.upper())
    return out


def _expected(result: VerifyContext) -> str:
    if "resource" in result.params:
        return str((result.inputs_dir / result.params["resource"]).read_text()).upper()
    return str(result.params.get("text", "")).upper()


@requestor.verify
def verify(result: VerifyContext) -> Verdict:
    global VERIFYING, MAX_VERIFYING
    with _LOCK:
        VERIFYING += 1
        MAX_VERIFYING = max(MAX_VERIFYING, VERIFYING)
    try:
        time.sleep(float(result.params.get("verify_sleep", 0)))
        return _verdict(result)
    finally:
        with _LOCK:
            VERIFYING -= 1


def _verdict(result: VerifyContext) -> Verdict:
    p = result.params
    if p.get("reject"):
        return Verdict(VerifyResult.FAILURE, "asked to reject")
    if p.get("await_always"):
        return Verdict(VerifyResult.AWAITING_DATA, "waits forever")
    if p.get("await_once"):
        marker = Path(p["await_once"]) / f"{p['name']}.awaited"
        if not marker.exists():
            marker.touch()
            return Verdict(VerifyResult.AWAITING_DATA, "waits once")
    if result.result_path.read_text() != _expected(result):
        return Verdict(VerifyResult.FAILURE, "wrong text")
    return Verdict(VerifyResult.SUCCESS)


@requestor.rpc("AbortTask")
async def abort_task(request: Any, work_dir: Path) -> Any:
    from golem_apps.proto import golem_task_api as api

    (work_dir / f"{request.task_id}.aborted").touch()
    return api.AbortTaskReply()
