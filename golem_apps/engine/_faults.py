"""Fault injection for the crash tests: a requestor that SIGKILLs itself at an exact point.

Off unless the environment variable :data:`FAULT_ENV` is set when the engine
opens; then the engine object's methods are wrapped, so that the engine's
code (and every process without the variable) has no check on its paths.
The provider never imports the engine.

``GOLEM_APPS_ENGINE_FAULT=<point>:<n>`` kills the process at the n-th time
(from 1) it reaches the point:

- ``handed_out``: a NextSubtask's hand-out is committed and its resources
  placed, its reply not yet written;
- ``merge_start``: a Verify's verdict completed the task (committed), its
  merge not yet begun;
- ``merge_end``: the merge is done and recorded, the Verify not yet answered.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

FAULT_ENV = "GOLEM_APPS_ENGINE_FAULT"
POINTS = ("handed_out", "merge_start", "merge_end")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(engine: Any) -> None:
    """Wrap ``engine``'s methods for the fault named in the environment, if any."""
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point not in POINTS or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{FAULT_ENV}={spec!r}: expected <point>:<n>, a point of {POINTS}")
    remaining = [int(count)]
    lock = threading.Lock()

    def reached() -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                _die()

    if point == "handed_out":
        next_subtask: Callable[..., Any] = engine.next_subtask

        @functools.wraps(next_subtask)
        async def handed_out(*args: Any) -> Any:
            # The hand-out's group has committed once the call returns.
            result = await next_subtask(*args)
            if result is not None:
                reached()
            return result

        engine.next_subtask = handed_out
        return
    merges = engine._merges
    merge: Callable[..., Any] = merges.merge

    @functools.wraps(merge)
    async def merging(*args: Any) -> None:
        if point == "merge_start":
            reached()
        await merge(*args)
        if point == "merge_end":
            reached()

    merges.merge = merging
