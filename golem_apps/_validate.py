"""Checks on untrusted request fields: ids that become folder names, JSON params.

On the provider's start-up path: standard library only.
"""

from __future__ import annotations

import json
from typing import Any

from . import constants
from ._exceptions import InvalidArgument

#: Longest file name most file systems accept, in bytes.
MAX_NAME_BYTES = 255

#: Names a task or subtask id must not take: a task dir's folders (the spec's), and
#: the files golem_apps and the node keep in a work or task dir. Names starting with
#: ``.`` are refused too: golem_apps' own files (the engine's database, scratch
#: folders, temporary files) are dot files.
RESERVED_NAMES = frozenset(
    (
        constants.TASK_INPUTS_DIR,
        constants.SUBTASK_INPUTS_DIR,
        constants.TASK_OUTPUTS_DIR,
        constants.SUBTASK_OUTPUTS_DIR,
        "status.json",  # golem_apps._taskstatus.STATUS_FILE (a test checks they agree)
        constants.TLS_SERVER_KEY,
        constants.TLS_SERVER_CERT,
        constants.TLS_CLIENT_CERT,
        constants.TLS_CLIENT_KEY,
    )
)


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


def safe_id(value: str, field: str) -> str:
    """Return a task or subtask id if it is a safe name that is not reserved, else raise.

    Ids become folder names beside a task dir's own folders and files: an id
    named like one of them (:data:`RESERVED_NAMES`, or a dot file) is refused.
    """
    safe_name(value, field)
    if value in RESERVED_NAMES or value.startswith("."):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidArgument(
            f"{field} must not be {shown!r}: reserved for the work dir's own folders and files"
        )
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
