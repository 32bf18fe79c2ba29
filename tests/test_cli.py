"""What the commands share (golem_apps._cli): the help formatter's width."""

from __future__ import annotations

import shutil

import pytest

from golem_apps._cli import Parser, terminal_width


@pytest.mark.parametrize("columns", [None, "57", "0", "-3", "wide"])
def test_terminal_width_is_shutils(monkeypatch: pytest.MonkeyPatch, columns: str | None) -> None:
    """The width argparse would get from shutil, whatever COLUMNS says."""
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert terminal_width() == shutil.get_terminal_size().columns


def test_help_is_wrapped_at_the_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    parser = Parser(prog="p", description="word " * 30)
    lines = parser.format_help().splitlines()
    assert max(len(line) for line in lines) <= 38  # argparse keeps a 2-column margin
    assert len(lines) > 5
