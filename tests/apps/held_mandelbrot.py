"""examples.mandelbrot, whose provider can be held: for killing a Dask worker mid-subtask.

With ``HELD_MANDELBROT_FILE`` set in the provider's environment and that file
holding a folder, a provider whose task dir is inside that folder writes its
pid to ``<file>.pid`` and waits (until cancelled, killed or the file goes)
before rendering. Split, verify and merge are mandelbrot's own, so the
picture is the same.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from examples import mandelbrot
from golem_apps import ComputeContext, Provider

requestor = mandelbrot.requestor
provider = Provider()

#: Safety bound on the hold (the test kills the worker long before).
HOLD_LIMIT = 60.0


def _held(ctx: ComputeContext) -> bool:
    name = os.environ.get("HELD_MANDELBROT_FILE")
    if not name:
        return False
    try:
        folder = Path(name).read_text()
    except OSError:
        return False
    return bool(folder) and str(ctx.task_dir.resolve()).startswith(folder)


@provider.compute
def render(ctx: ComputeContext) -> Path:
    """Wait while held, then render the tile as mandelbrot does."""
    if _held(ctx):
        Path(os.environ["HELD_MANDELBROT_FILE"] + ".pid").write_text(str(os.getpid()))
        deadline = time.monotonic() + HOLD_LIMIT
        while _held(ctx) and not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
    return mandelbrot.render(ctx)
