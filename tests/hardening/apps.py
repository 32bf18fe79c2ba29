"""Apps for the hardening tests: each misbehaves on request, through its params."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio

from golem_apps import (
    ComputeContext,
    InvalidArgument,
    Part,
    Provider,
    Requestor,
    TaskContext,
    Verdict,
    VerifyContext,
    VerifyResult,
)

requestor = Requestor("hardening", image="golem/hardening", tag="1.0")
provider = Provider()
async_provider = Provider()
#: The async compute again, in an app with a lifespan: the lifespan's exit runs on
#: the app's loop, which a loop-blocking compute never gives back.
lifespan_provider = Provider()


@lifespan_provider.lifespan
async def lifespan(app: Provider) -> AsyncIterator[None]:
    """Nothing to set up: its exit is what matters."""
    yield


#: Released by tests (and at exit) to let hanging handlers return.
RELEASE = threading.Event()


@requestor.task
def split(task: TaskContext) -> Iterator[Part]:
    """Params: ``n`` parts (an int, validated), optional ``resources``/``names``, ``hang``."""
    params: dict[str, Any] = task.params
    if params.get("hang"):
        RELEASE.wait(30)
    n = params.get("n", 2)
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 10_000:
        raise InvalidArgument(
            f"task_params_json: 'n' must be an integer from 0 to 10000, got {n!r}"
        )
    resources = params.get("resources", [])
    names = params.get("names")
    for index in range(n):
        name = names[index] if names else None
        yield Part(params={"index": index}, resources=resources, name=name)


@requestor.verify
def verify(result: VerifyContext) -> Verdict:
    """Hangs (until RELEASE) when the task dir holds a ``hang_verify`` file."""
    if (result.task_dir / "hang_verify").exists():
        RELEASE.wait(30)
    if result.result_path.stat().st_size == 0:
        return Verdict(VerifyResult.FAILURE, "empty result")
    return Verdict(VerifyResult.SUCCESS)


@async_provider.compute
async def async_compute(ctx: ComputeContext) -> Path | str:
    """Modes (params ``mode``) that misbehave on the event loop."""
    mode = ctx.params.get("mode", "ok")
    if mode == "stubborn_async":
        # Swallows its cancellation and keeps going: stopping the server hangs.
        print("computing", flush=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:  # noqa: SIM105 - swallowing cancellation is the point of this handler
                await anyio.sleep(0.05)
            except BaseException:
                pass
    elif mode == "block_loop":
        # Blocks the event loop itself: no loop callback can run any more.
        print("computing", flush=True)
        time.sleep(120)  # noqa: ASYNC251 - the point of this handler
    out = ctx.subtask_dir / "result.txt"
    out.write_text(f"result {ctx.subtask_id}")
    return out


lifespan_provider.add_compute(async_compute)


@provider.compute
def compute(ctx: ComputeContext) -> Path | str:
    """Modes (params ``mode``): ok, cooperative, ignore_cancel, children, escape, symlink."""
    mode = ctx.params.get("mode", "ok")
    out = ctx.subtask_dir / "result.txt"
    if mode == "cooperative":
        print("computing", flush=True)
        while not ctx.cancelled:
            time.sleep(0.02)
    elif mode == "ignore_cancel":
        # Never looks at ctx.cancelled: only the hard exit can stop it.
        print("computing", flush=True)
        time.sleep(120)
    elif mode == "children":
        # A child, and a grandchild behind a shell: none may outlive the provider.
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(120)"], stdin=subprocess.DEVNULL
        )
        shell = subprocess.Popen(["sh", "-c", "sleep 120 & sleep 121"], stdin=subprocess.DEVNULL)
        print(f"children {child.pid} {shell.pid}", flush=True)
        while not ctx.cancelled:
            time.sleep(0.02)
    elif mode == "escape":
        return str(ctx.params["path"])
    elif mode == "symlink":
        link = ctx.subtask_dir / "link.txt"
        link.symlink_to(ctx.params["target"])
        return link
    out.write_text(f"result {ctx.subtask_id}")
    return out
