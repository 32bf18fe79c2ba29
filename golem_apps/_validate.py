"""Checks on untrusted request fields: ids that become folder names, JSON params.

On the provider's start-up path: standard library only.
"""

from __future__ import annotations

import json
from typing import Any

from ._exceptions import InvalidArgument

#: Longest file name most file systems accept, in bytes.
MAX_NAME_BYTES = 255


def safe_name(value: str, field: str) -> str:
    """Return ``value`` if it is one safe path component, else raise InvalidArgument.

    Refused: empty, ``.``/``..``, a path separator, NUL, over 255 bytes.
    """
    problem = None
    if not value:
        problem = "must not be empty"
    elif value in (".", ".."):
        problem = f"must not be {value!r}"
    elif "/" in value or "\\" in value:
        problem = "must not contain a path separator"
    elif "\x00" in value:
        problem = "must not contain NUL"
    elif len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        problem = f"must be at most {MAX_NAME_BYTES} bytes"
    if problem is not None:
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidArgument(f"{field} {problem} (got {shown!r})")
    return value


def parse_params(text: str, field: str) -> dict[str, Any]:
    """Parse a JSON object field; empty text is an empty object."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"{field} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgument(f"{field} is nested too deeply") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{field} must be a JSON object, not {type(value).__name__}")
    return value
