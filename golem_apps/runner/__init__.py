"""The local runner: run a whole task of an app on this machine, as a Golem node would.

From the command line: ``python -m golem_apps.run MODULE [options]``. From
Python (tests, asyncio programs)::

    result = await run_task("examples.mandelbrot", params={"size": 256}, providers=4)
    print(result.output_files)

It drives the apps only over the wire, through the typed clients.
"""

from .._exceptions import TaskFailed
from ._api import run_task
from ._progress import PlainReporter, Reporter, RichReporter, Stats, auto_reporter
from ._summary import Failure, RunResult, format_summary

__all__ = [
    "Failure",
    "PlainReporter",
    "Reporter",
    "RichReporter",
    "RunResult",
    "Stats",
    "TaskFailed",
    "auto_reporter",
    "format_summary",
    "run_task",
]
