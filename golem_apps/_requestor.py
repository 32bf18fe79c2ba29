"""The Requestor registry: app metadata and the handlers of the long-lived requestor app."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from ._exceptions import HandlerError
from ._registry import F, Lifespan, Registry
from .constants import DOCKER_CPU_ENV_ID

#: RequestorApp RPCs an app may take over whole with :meth:`Requestor.add_rpc`.
REQUESTOR_RPCS = (
    "CreateTask",
    "NextSubtask",
    "Verify",
    "DiscardSubtasks",
    "RunBenchmark",
    "HasPendingSubtasks",
    "AbortTask",
    "AbortSubtask",
    "Shutdown",
)


@dataclass(frozen=True)
class TaskOptions:
    """Options given to ``@requestor.task(...)``."""

    max_retries: int = 3
    """How many failed verifications (FAILURE or INCONCLUSIVE) a task tolerates in all."""
    redundancy: int = 1
    """How many subtasks, on distinct nodes, compute each part and vote on its result."""
    ban_after: int = 0
    """After this many failed verifications a node gets nothing more of the task (0: never)."""


@dataclass(frozen=True)
class AppInfo:
    """The app's metadata: what CreateTask answers and what the app definition holds."""

    name: str
    version: str = "0.0"
    description: str = ""
    author: str = ""
    license: str = ""
    image: str = ""
    tag: str = "latest"
    env_id: str = DOCKER_CPU_ENV_ID
    min_memory_mib: float = 0.0
    max_benchmark_score: float = 1.0
    market_strategy: str = "brass"
    prerequisites: Mapping[str, str] = field(default_factory=dict)
    requestor_env: str = DOCKER_CPU_ENV_ID
    """The requestor's own environment, for the app definition."""
    requestor_prereq: Mapping[str, Any] = field(default_factory=dict)
    """The requestor env's prerequisites; empty means ``{"image": image, "tag": tag}``."""

    @property
    def provider_prerequisites(self) -> dict[str, str]:
        """The provider env's prerequisites: given ones, else ``{"image", "tag"}``."""
        if self.prerequisites:
            return dict(self.prerequisites)
        return {"image": self.image or self.name, "tag": self.tag}

    @property
    def requestor_prerequisites(self) -> dict[str, Any]:
        """The requestor env's prerequisites (app definition): given ones, else the image's."""
        if self.requestor_prereq:
            return dict(self.requestor_prereq)
        return {"image": self.image or self.name, "tag": self.tag}


class Requestor(Registry):
    """The requestor side of an app: app metadata plus ``@requestor.task`` and friends.

    ``image``/``tag`` name the app's Docker image, used as the provider
    environment's prerequisites (``{"image": ..., "tag": ...}``) unless
    ``prerequisites`` is given. ``requestor_env``/``requestor_prereq`` are the
    requestor's own environment in the app definition (default: the same image
    in ``docker_cpu``; see ``python -m golem_apps.appdef``). Serve it with
    ``python -m golem_apps.serve MODULE requestor PORT`` or
    :func:`golem_apps.serve_requestor`.
    """

    _role = "requestor"

    def __init__(
        self,
        name: str,
        *,
        version: str = "0.0",
        description: str = "",
        author: str = "",
        license: str = "",
        image: str = "",
        tag: str = "latest",
        env_id: str = DOCKER_CPU_ENV_ID,
        prerequisites: Mapping[str, str] | None = None,
        min_memory_mib: float = 0.0,
        max_benchmark_score: float = 1.0,
        market_strategy: str = "brass",
        requestor_env: str = DOCKER_CPU_ENV_ID,
        requestor_prereq: Mapping[str, Any] | None = None,
        lifespan: Lifespan | None = None,
    ) -> None:
        super().__init__(lifespan=lifespan)
        if not name:
            raise ValueError("Requestor(name=...) must not be empty")
        self.info = AppInfo(
            name=name,
            version=version,
            description=description,
            author=author,
            license=license,
            image=image,
            tag=tag,
            env_id=env_id,
            min_memory_mib=min_memory_mib,
            max_benchmark_score=max_benchmark_score,
            market_strategy=market_strategy,
            prerequisites=dict(prerequisites or {}),
            requestor_env=requestor_env,
            requestor_prereq=dict(requestor_prereq or {}),
        )
        self.task_options = TaskOptions()
        self.rpcs: dict[str, Callable[..., Any]] = {}
        #: Event listeners by kind, as added with :meth:`add_listener`.
        self.listeners: dict[str, list[Callable[..., Any]]] = {}

    # -- @requestor.task ---------------------------------------------------

    def add_task(
        self,
        func: F,
        *,
        max_retries: int = 3,
        params: type | None = None,
        redundancy: int = 1,
        ban_after: int = 0,
    ) -> F:
        """Register the CreateTask handler: ``(task: TaskContext) -> parts``.

        It returns or yields :class:`Part` objects (or dicts of params); a
        generator is consumed lazily. ``max_retries`` bounds the failed
        verifications a task tolerates before its parts stop being handed out.

        ``redundancy=K`` has each part computed by K subtasks on K distinct
        node ids; Verify answers AWAITING_DATA until all K results are in, then
        the results vote (identical bytes, or the ``@requestor.compare`` hook):
        a majority (``K // 2 + 1``) wins, the others fail, outvoted; without a
        majority more copies are handed out. ``ban_after=N`` bans a node from
        the task after N failed verifications (0: never): it gets the empty
        NextSubtask reply from then on.

        Typed params: a handler ``(task, params)`` gets the task params
        validated as ``params`` (a dataclass, TypedDict or pydantic model; by
        default the annotation of its second parameter). Invalid task params
        are answered with INVALID_ARGUMENT naming the bad fields.
        """
        for option, value, least in (
            ("max_retries", max_retries, 0),
            ("redundancy", redundancy, 1),
            ("ban_after", ban_after, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise HandlerError(f"@requestor.task({option}=...) must be an int >= {least}")
        self._register("task", func, ("task",), typed=True, params=params)
        self.task_options = TaskOptions(
            max_retries=max_retries, redundancy=redundancy, ban_after=ban_after
        )
        return func

    @overload
    def task(self, func: F, /) -> F: ...
    @overload
    def task(
        self,
        func: None = None,
        /,
        *,
        max_retries: int = 3,
        params: type | None = None,
        redundancy: int = 1,
        ban_after: int = 0,
    ) -> Callable[[F], F]: ...
    def task(
        self,
        func: F | None = None,
        /,
        *,
        max_retries: int = 3,
        params: type | None = None,
        redundancy: int = 1,
        ban_after: int = 0,
    ) -> F | Callable[[F], F]:
        """Decorator form of :meth:`add_task`, bare or with options; returns the function."""

        def decorator(f: F) -> F:
            return self.add_task(
                f,
                max_retries=max_retries,
                params=params,
                redundancy=redundancy,
                ban_after=ban_after,
            )

        return decorator if func is None else decorator(func)

    # -- verify, merge, benchmark -----------------------------------------

    def add_verify(self, func: F) -> F:
        """Register the Verify hook: ``(result: VerifyContext) -> bool | VerifyResult | Verdict``.

        Default (no hook): a result file exists and is not empty.
        """
        return self._register("verify", func, ("result",))

    def verify(self, func: F) -> F:
        """Decorator form of :meth:`add_verify`; returns the function unchanged."""
        return self.add_verify(func)

    def add_compare(self, func: F) -> F:
        """Register the vote's comparison: ``(a: VerifyContext, b: VerifyContext) -> bool``.

        Used by tasks with ``redundancy`` > 1: True when two results of one part
        agree (for example within a tolerance). Default: identical bytes.
        """
        return self._register("compare", func, ("a", "b"))

    def compare(self, func: F) -> F:
        """Decorator form of :meth:`add_compare`; returns the function unchanged."""
        return self.add_compare(func)

    def add_merge(self, func: F) -> F:
        """Register the merge hook: ``(task: MergeContext) -> None``, run when every part is done.

        Default (no hook): copy each part's result into ``task_outputs``.
        """
        return self._register("merge", func, ("task",))

    def merge(self, func: F) -> F:
        """Decorator form of :meth:`add_merge`; returns the function unchanged."""
        return self.add_merge(func)

    def add_benchmark(self, func: F) -> F:
        """Register the requestor's RunBenchmark handler: ``() -> float``."""
        return self._register("benchmark", func, ())

    def benchmark(self, func: F) -> F:
        """Decorator form of :meth:`add_benchmark`; returns the function unchanged."""
        return self.add_benchmark(func)

    # -- events ------------------------------------------------------------

    def add_listener(self, kind: str, func: F) -> F:
        """Call ``func(event: Event)`` on every event of ``kind`` (see ``EVENT_KINDS``).

        For metrics and monitoring: a listener runs after the RPC's work and
        before its reply is sent (a sync one in a worker thread); an exception
        in it is logged and never changes the reply. Several listeners may
        share a kind; they run in the order they were added.
        """
        from ._events import EVENT_KINDS
        from ._handlers import check_signature

        if kind not in EVENT_KINDS:
            raise HandlerError(
                f"@requestor.on({kind!r}): unknown event; expected one of {', '.join(EVENT_KINDS)}"
            )
        check_signature(func, f"@requestor.on({kind!r})", ("event",))
        self.listeners.setdefault(kind, []).append(func)
        return func

    def on(self, kind: str) -> Callable[[F], F]:
        """Decorator form of :meth:`add_listener`; returns the function unchanged."""

        def decorator(func: F) -> F:
            return self.add_listener(kind, func)

        return decorator

    # -- escape hatch ------------------------------------------------------

    def add_rpc(self, name: str, func: F) -> F:
        """Take over one RequestorApp RPC whole: ``async (request, work_dir) -> reply``.

        ``request`` and the reply are betterproto's generated messages of
        ``golem_apps.proto.golem_task_api`` (docs/messages.md: the other RPCs use
        light classes with the same bytes); the engine is bypassed for that RPC.
        """
        if name not in REQUESTOR_RPCS:
            raise HandlerError(
                f"@requestor.rpc({name!r}): unknown RPC; "
                f"expected one of {', '.join(REQUESTOR_RPCS)}"
            )
        from ._handlers import is_async

        if not is_async(func):
            raise HandlerError(f"@requestor.rpc({name!r}) handler must be an async function")
        self._register(f"rpc {name}", func, ("request", "work_dir"))
        self.rpcs[name] = func
        return func

    def rpc(self, name: str) -> Callable[[F], F]:
        """Decorator form of :meth:`add_rpc`; returns the function unchanged."""

        def decorator(func: F) -> F:
            return self.add_rpc(name, func)

        return decorator
