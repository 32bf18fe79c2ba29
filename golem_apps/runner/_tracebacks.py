"""The failing part's traceback, for the app's author: the wire carries only its message.

A handler failure answers its RPC with ``KeyError: 'texts'`` and logs its
traceback on ``golem_apps.server.tracebacks`` at DEBUG; the runner starts its
children with ``serve --tracebacks``, which logs them whatever the level. When
a run fails, the runner finds the traceback that ends in the message it was
told: in a child's log (the output the runner captured, as a node keeps each
container's), or, for apps served in this process, in the log record itself,
whose exception is the app's own.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: The logger whose records carry handler failures' tracebacks (``server/_status.py``).
TRACEBACKS_LOGGER = "golem_apps.server.tracebacks"
#: Most log bytes read per file when looking for a traceback.
MAX_LOG_BYTES = 1 << 20

# A log record's first line (the format of _cli.configure_logging).
_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_TRACEBACK_START = "Traceback (most recent call last):"


@dataclass(frozen=True)
class AppError:
    """The failure behind a run's error: its traceback text, and the exception if in-process."""

    traceback: str
    exception: BaseException | None = None


def _plumbing() -> tuple[str, ...]:
    # Folders whose frames are golem_apps' and anyio's plumbing around the handler.
    import asyncio

    import anyio

    import golem_apps

    return tuple(
        str(Path(module.__file__).parent) + "/"
        for module in (golem_apps, anyio, asyncio)
        if module.__file__
    )


def app_frames_only(text: str) -> str:
    """``text`` (a traceback) without the frames of golem_apps, anyio and asyncio.

    What is left is the app's own code; if nothing would be, ``text`` unchanged.
    """
    plumbing = _plumbing()
    kept: list[str] = []
    dropped = False
    skipping = False
    for line in text.splitlines():
        match = re.match(r'^  File "([^"]+)", line \d+', line)
        if match:
            skipping = match.group(1).startswith(plumbing)
            dropped = dropped or skipping
            if skipping:
                continue
        elif skipping and line.startswith("    "):
            continue  # the skipped frame's source lines
        else:
            skipping = False
        kept.append(line)
    if not dropped or not any(re.match(r'^  File "', line) for line in kept):
        return text
    return "\n".join(kept)


def _last_line_key(line: str) -> str:
    # A traceback's last line qualifies the type (``examples.flaky.SimulatedFailure: ...``);
    # the wire message uses the bare name.
    head, sep, rest = line.partition(": ")
    return head.rsplit(".", 1)[-1] + sep + rest


class Capture(logging.Filter):
    """Keeps the exceptions of in-process handler failures.

    Their records go on to the handlers only if the logger showed them before
    (DEBUG): the runner prints the one that failed the run, and each failure
    still logs its one ERROR line.
    """

    def __init__(self, show: bool) -> None:
        super().__init__()
        self.errors: list[tuple[str, BaseException]] = []
        self._show = show

    def filter(self, record: logging.LogRecord) -> bool:
        """Take the record's exception; pass the record on only if it was wanted."""
        message = getattr(record, "wire_message", None)
        if isinstance(message, str) and record.exc_info and record.exc_info[1] is not None:
            self.errors.append((message, record.exc_info[1]))
        return self._show

    def find(self, text: str) -> AppError | None:
        """The last captured failure whose message ``text`` (a run's error) contains."""
        for message, exc in reversed(self.errors):
            if message in text:
                text = "".join(traceback.format_exception(exc)).rstrip("\n")
                return AppError(app_frames_only(text), exc)
        return None


@contextmanager
def captured() -> Iterator[Capture]:
    """Capture in-process handler failures while the block runs."""
    logger = logging.getLogger(TRACEBACKS_LOGGER)
    level = logger.level
    capture = Capture(show=logger.isEnabledFor(logging.DEBUG))
    logger.setLevel(logging.DEBUG)  # the records are made, whatever the level
    logger.addFilter(capture)
    try:
        yield capture
    finally:
        logger.removeFilter(capture)
        logger.setLevel(level)


def tracebacks_in(text: str) -> list[str]:
    """The tracebacks a log holds, oldest first: each up to the next log record."""
    found: list[str] = []
    block: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(_TRACEBACK_START) and block is None:
            block = [line]
        elif block is not None:
            if _RECORD_START.match(line):
                found.append("\n".join(block).rstrip())
                block = None
            else:
                block.append(line)
    if block is not None:
        found.append("\n".join(block).rstrip())
    return found


def find_in_logs(logs_dir: Path, text: str) -> AppError | None:
    """The newest traceback in ``logs_dir`` whose last line ``text`` (a run's error) names."""
    try:
        paths = sorted(logs_dir.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return None
    for path in paths:
        try:
            with path.open("rb") as file:
                file.seek(max(0, path.stat().st_size - MAX_LOG_BYTES))
                content = file.read().decode("utf-8", "replace")
        except OSError:
            continue
        for block in reversed(tracebacks_in(content)):
            last = block.splitlines()[-1].strip()
            if last and _last_line_key(last) in text:
                return AppError(f"{app_frames_only(block)}\n(from {path})")
    return None
