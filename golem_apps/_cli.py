"""What the three commands (serve, run, appdef) share: an argparse parser whose
errors are one line, and loading ``MODULE[:ATTR]``.

On the provider's start-up path (serve): standard library only.
"""

from __future__ import annotations

import argparse
import importlib
from typing import NoReturn

from ._exceptions import UsageError


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def load_app(spec: str, default_attr: str) -> object:
    """Import ``MODULE[:ATTR]`` and return the attribute (``default_attr`` if none given)."""
    module_name, _, attr = spec.partition(":")
    attr = attr or default_attr
    if not module_name:
        raise UsageError(f"no module in {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(f"cannot import module {module_name!r}: {exc}") from None
        raise UsageError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    except Exception as exc:
        raise UsageError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UsageError(f"module {module_name!r} has no attribute {attr!r}") from None
