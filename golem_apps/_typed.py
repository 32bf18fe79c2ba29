"""Typed handler params: a dataclass, TypedDict or pydantic model instead of a dict.

Validation and serialization are pydantic's ``TypeAdapter`` (the optional
``typed`` extra); golem_apps has no converter of its own. This module imports
only the standard library: pydantic is imported on the first validation or
serialization, so an app that declares no params type never loads it, and one
that does pays for it on its first request, not before Health says SERVING.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from ._exceptions import HandlerError, InvalidArgument
from ._task import Part

#: At most this many field errors are spelled out in an INVALID_ARGUMENT message.
MAX_ERRORS_SHOWN = 10

_INSTALL_HINT = "typed params need pydantic: pip install 'golem_apps[typed]'"


def _is_typeddict(tp: type) -> bool:
    return issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def _is_pydantic_model(tp: type) -> bool:
    # Without importing pydantic: an app that never imported it has no models.
    return any(
        base.__name__ == "BaseModel" and base.__module__.startswith("pydantic")
        for base in tp.__mro__
    )


def check_params_type(tp: object, label: str) -> type:
    """Return ``tp`` if it can be a handler's params type, else raise HandlerError."""
    if not isinstance(tp, type) or not (
        dataclasses.is_dataclass(tp) or _is_typeddict(tp) or _is_pydantic_model(tp)
    ):
        raise HandlerError(
            f"{label}: params type must be a dataclass, a TypedDict or a pydantic model, not {tp!r}"
        )
    if _is_typeddict(tp) and sys.version_info < (3, 12) and type(tp).__module__ == "typing":
        raise HandlerError(
            f"{label}: {tp.__qualname__} is a typing.TypedDict; on Python < 3.12 pydantic "
            f"needs typing_extensions.TypedDict"
        )
    if importlib.util.find_spec("pydantic") is None:
        raise HandlerError(f"{label}: {_INSTALL_HINT}")
    return tp


def _binds(signature: inspect.Signature | None, arguments: tuple[str, ...]) -> bool:
    if signature is None:
        return True
    try:
        signature.bind(*arguments)
    except TypeError:
        return False
    return True


def params_type_of(
    func: Callable[..., object], label: str, arguments: tuple[str, ...], params: object
) -> type | None:
    """The params type of a handler, or None when it takes only ``arguments``.

    A handler taking one more positional parameter gets the validated params
    there; its type is ``params`` if given, else that parameter's annotation.
    """
    try:
        signature: inspect.Signature | None = inspect.signature(func)
    except (TypeError, ValueError):  # builtins without a signature
        signature = None
    typed = (*arguments, "params")
    if params is not None:
        if not _binds(signature, typed):
            wanted = ", ".join(typed)
            raise HandlerError(f"{label}(params=...) handler must take exactly ({wanted})")
        return check_params_type(params, label)
    if signature is None or _binds(signature, arguments) or not _binds(signature, typed):
        return None  # untyped (the caller's signature check reports a bad one)
    parameter = list(signature.parameters.values())[len(arguments)]
    annotation = parameter.annotation
    if isinstance(annotation, str):
        try:
            annotation = inspect.signature(func, eval_str=True).parameters[parameter.name]
            annotation = annotation.annotation
        except Exception as exc:
            raise HandlerError(
                f"{label}: cannot resolve the annotation {parameter.annotation!r} of "
                f"parameter {parameter.name!r} ({exc}); pass the type as params=..."
            ) from None
    if annotation is inspect.Parameter.empty:
        name = getattr(func, "__qualname__", repr(func))
        wanted = ", ".join(arguments)
        raise HandlerError(
            f"{label} handler {name}{signature} must take exactly ({wanted}), or ({wanted}, "
            f"params) with params annotated with its type (a dataclass, TypedDict or pydantic "
            f"model) or given as {label}(params=...)"
        )
    return check_params_type(annotation, label)


@cache
def _adapter(tp: type) -> Any:
    try:
        from pydantic import TypeAdapter
    except ImportError:  # pragma: no cover - checked at decoration time
        raise HandlerError(_INSTALL_HINT) from None
    return TypeAdapter(tp)


def validate(tp: type, data: Mapping[str, Any], field: str) -> Any:
    """``data`` (a parsed JSON object) as a ``tp``; InvalidArgument naming the bad fields."""
    from pydantic import ValidationError

    try:
        return _adapter(tp).validate_python(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        shown = [
            f"{'.'.join(str(part) for part in error['loc']) or '(object)'}: {error['msg']}"
            for error in errors[:MAX_ERRORS_SHOWN]
        ]
        if len(errors) > MAX_ERRORS_SHOWN:
            shown.append(f"and {len(errors) - MAX_ERRORS_SHOWN} more")
        raise InvalidArgument(
            f"{field} does not match {tp.__qualname__}: {'; '.join(shown)}"
        ) from None


def is_params_object(value: object) -> bool:
    """True for an instance of a dataclass or of a pydantic model."""
    kind = type(value)
    return (dataclasses.is_dataclass(value) and not isinstance(value, type)) or (
        _is_pydantic_model(kind)
    )


def to_json_object(value: object) -> dict[str, Any]:
    """A params object (dataclass or pydantic model instance) as a JSON object."""
    if isinstance(value, Mapping):
        return dict(value)
    if not is_params_object(value):
        raise TypeError(
            f"part params must be a dict, a dataclass or a pydantic model, "
            f"not {type(value).__name__}"
        )
    kind: Any = type(value)
    dumped = _adapter(kind).dump_python(value, mode="json")
    if not isinstance(dumped, dict):
        raise TypeError(f"{type(value).__name__} does not serialize to a JSON object")
    return dumped


def part_from(item: object) -> Part:
    """A yielded part whose params (or itself) is a params object, with JSON params."""
    if isinstance(item, Part):
        return dataclasses.replace(item, params=to_json_object(item.params))
    if is_params_object(item):
        return Part(params=to_json_object(item))
    raise TypeError(
        f"a task handler must return or yield Part objects, dicts of params, or "
        f"dataclass or pydantic model instances, not {type(item).__name__}"
    )
