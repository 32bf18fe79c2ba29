"""What the commands (serve, run, appdef) share: an argparse parser whose errors
are one line, loading ``MODULE[:ATTR]`` or ``path/to/app.py[:ATTR]``, and the
check that a run's app has both sides.

On the provider's start-up path (serve): standard library only.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

from ._exceptions import UsageError

if TYPE_CHECKING:
    from ._provider import Provider
    from ._requestor import Requestor


def terminal_width() -> int:
    """The terminal's width as ``shutil.get_terminal_size()`` finds it (COLUMNS, stdout, 80).

    argparse asks shutil for it in every formatter it makes, one per
    ``add_argument`` too, and importing shutil loads bz2 and lzma: ~1.5 ms of
    a provider's start-up, paid once per subtask.
    """
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help formatter, its width found without importing shutil."""

    def __init__(self, prog: str, **kwargs: Any) -> None:
        kwargs.setdefault("width", terminal_width() - 2)  # argparse's margin
        super().__init__(prog, **kwargs)


class RawDescriptionHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """argparse's formatter that keeps the description's and epilog's lines, sized as above."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of printing usage and exiting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def is_file_spec(target: str) -> bool:
    """Whether the module part of a spec is a file path (``app.py``, ``dir/app``)."""
    return target.endswith(".py") or "/" in target


def load_app(spec: str, default_attr: str) -> object:
    """Import ``MODULE[:ATTR]`` (or ``FILE[:ATTR]``) and return the attribute.

    ``ATTR`` (default ``default_attr``) may be dotted: ``app:apps.requestor``.
    A file is imported as ``python app.py`` would: its folder first on
    ``sys.path``, so that its sibling modules import.
    """
    target, _, attr = spec.partition(":")
    attr = attr or default_attr
    if not target:
        raise UsageError(f"no module in {spec!r}")
    module = _import_file(target) if is_file_spec(target) else _import_module(target)
    value: object = module
    for name in attr.split("."):
        try:
            value = getattr(value, name)
        except AttributeError:
            raise UsageError(f"{_shown(target)} has no attribute {attr!r}") from None
    return value


def _shown(target: str) -> str:
    return target if is_file_spec(target) else f"module {target!r}"


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise UsageError(f"cannot import module {name!r}: {exc}") from None
        raise UsageError(f"importing {name!r} failed: {type(exc).__name__}: {exc}") from None
    except Exception as exc:
        raise UsageError(f"importing {name!r} failed: {type(exc).__name__}: {exc}") from None


def _import_file(target: str) -> ModuleType:
    path = Path(target)
    if path.suffix != ".py":
        path = path.with_name(path.name + ".py")
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    path = path.resolve()
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        if getattr(loaded, "__file__", None) and Path(str(loaded.__file__)).resolve() == path:
            return loaded  # the in-process runner loads both sides from one file
        name = f"golem_apps_file_{abs(hash(str(path))):x}_{name}"  # another module has its name
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise UsageError(f"importing {target} failed: {type(exc).__name__}: {exc}") from None
    return module


def role_spec(app: str, role: str) -> str:
    """The ``serve`` spec of one side of a run's ``app`` spec.

    ``app`` is ``MODULE`` or ``FILE`` (the sides are its ``requestor`` and
    ``provider``), or ``MODULE:ATTR`` / ``FILE:ATTR`` naming an object that
    holds them (a class, a namespace). Files become absolute paths, so that a
    child process in another folder finds them.
    """
    target, _, attr = app.partition(":")
    if is_file_spec(target):
        target = str(Path(target).absolute())
    return f"{target}:{attr}.{role}" if attr else f"{target}:{role}"


def load_run_apps(app: str) -> tuple[Requestor, Provider]:
    """Import a run's app and check it has what a run needs; UsageError if not."""
    if not app or app.startswith(":"):
        raise UsageError(f"no module in {app!r}")
    if ":" not in app:
        requestor = load_app(role_spec(app, "requestor"), "requestor")
        provider = load_app(role_spec(app, "provider"), "provider")
        return check_run_apps(requestor, provider, _shown(app))
    holder = load_app(app, "")
    sides = []
    for role in ("requestor", "provider"):
        if not hasattr(holder, role):
            raise UsageError(
                f"{app} is a {type(holder).__name__} without {role!r}: MODULE:ATTR names "
                "an object holding the app's requestor and provider (or give MODULE alone)"
            )
        sides.append(getattr(holder, role))
    return check_run_apps(sides[0], sides[1], app)


def check_run_apps(requestor: object, provider: object, where: str) -> tuple[Requestor, Provider]:
    """``(requestor, provider)`` if a run can work with them, else UsageError saying why.

    A Requestor with a task handler (or a CreateTask override) and a Provider
    with a compute handler: checked before any process starts.
    """
    from ._provider import Provider
    from ._requestor import Requestor

    if not isinstance(requestor, Requestor):
        raise UsageError(
            f"{where}: 'requestor' is a {type(requestor).__name__}, not a golem_apps.Requestor"
        )
    if requestor.handler("task") is None and "CreateTask" not in requestor.rpcs:
        raise UsageError(f"{where}: the requestor has no @requestor.task handler")
    if not isinstance(provider, Provider):
        raise UsageError(
            f"{where}: 'provider' is a {type(provider).__name__}, not a golem_apps.Provider"
        )
    if provider.handler("compute") is None:
        raise UsageError(f"{where}: the provider has no @provider.compute handler")
    return requestor, provider


def configure_logging(level: str, app: str | None = None) -> None:
    """``--log-level``: the level of golem_apps' loggers and the app's, not of every library.

    Other loggers (grpclib, hpack, asyncio, ...) stay at WARNING: at DEBUG,
    HTTP/2 header compression alone logs every frame. ``app`` is the spec;
    its top-level module's loggers (``logging.getLogger(__name__)``) follow
    ``level`` too.
    """
    import logging

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    names = ["golem_apps"]
    if app:
        target = app.partition(":")[0]
        names.append(Path(target).stem if is_file_spec(target) else target.split(".")[0])
    for name in names:
        logging.getLogger(name).setLevel(level)
