"""golem_apps: write Golem task-api applications as a few decorated functions.

::

    requestor = Requestor("myapp", image="me/myapp", tag="1.0")
    provider = Provider()

    @requestor.task
    def split(task: TaskContext) -> list[Part]: ...

    @provider.compute
    def compute(ctx: ComputeContext) -> Path: ...

Serve with ``python -m golem_apps.serve myapp requestor|provider PORT``.
Light names are imported eagerly; verdicts, results, servers, clients, events
and task statuses on first use, so that a provider's start-up pays only for what it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

#: The installed version: a literal, so that knowing it costs nothing at start-up
#: (pyproject.toml holds the same; a test keeps them equal).
__version__ = "0.1.0"

from ._exceptions import (
    AlreadyExists,
    ComputeFailed,
    ConfigError,
    EngineError,
    GolemAppsError,
    HandlerError,
    InvalidArgument,
    InvalidTask,
    SubtaskNotFound,
    TaskFailed,
    TaskNotFound,
    WrongState,
)
from ._provider import Provider
from ._requestor import AppInfo, Requestor, TaskOptions
from ._task import ComputeContext, Part, TaskContext

if TYPE_CHECKING:
    from ._client import (
        CreatedTask,
        ProgressReport,
        ProviderClient,
        RequestorClient,
        SubtaskAssignment,
    )
    from ._contexts import (
        MergeContext,
        PartResult,
        PartResults,
        Verdict,
        VerifyContext,
        VerifyResult,
    )
    from ._events import Event
    from ._taskstatus import NodeStatus, TaskStatus, read_task_status
    from .server._provider import ProviderServer, run_provider, serve_provider
    from .server._requestor import RequestorServer, serve_requestor

__all__ = [
    "AlreadyExists",
    "AppInfo",
    "ComputeContext",
    "ComputeFailed",
    "ConfigError",
    "CreatedTask",
    "EngineError",
    "Event",
    "GolemAppsError",
    "HandlerError",
    "InvalidArgument",
    "InvalidTask",
    "MergeContext",
    "NodeStatus",
    "Part",
    "PartResult",
    "PartResults",
    "ProgressReport",
    "Provider",
    "ProviderClient",
    "ProviderServer",
    "Requestor",
    "RequestorClient",
    "RequestorServer",
    "SubtaskAssignment",
    "SubtaskNotFound",
    "TaskContext",
    "TaskFailed",
    "TaskNotFound",
    "TaskOptions",
    "TaskStatus",
    "Verdict",
    "VerifyContext",
    "VerifyResult",
    "WrongState",
    "read_task_status",
    "run_provider",
    "serve_provider",
    "serve_requestor",
]

_LAZY = {
    # Requestor-side names a provider's start-up never needs (they cost ~3 ms of imports).
    "MergeContext": "._contexts",
    "PartResult": "._contexts",
    "PartResults": "._contexts",
    "Verdict": "._contexts",
    "VerifyContext": "._contexts",
    "VerifyResult": "._contexts",
    "Event": "._events",
    "NodeStatus": "._taskstatus",
    "TaskStatus": "._taskstatus",
    "read_task_status": "._taskstatus",
    "CreatedTask": "._client",
    "ProgressReport": "._client",
    "ProviderClient": "._client",
    "RequestorClient": "._client",
    "SubtaskAssignment": "._client",
    "ProviderServer": ".server._provider",
    "run_provider": ".server._provider",
    "serve_provider": ".server._provider",
    "RequestorServer": ".server._requestor",
    "serve_requestor": ".server._requestor",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'golem_apps' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value
