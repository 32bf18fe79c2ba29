"""Commands as a node runs images: a prefix, the role and port appended, {work_dir} replaced."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from golem_apps.runner._process import ServerCommand


def test_the_role_and_port_are_appended_and_the_work_dir_replaced(tmp_path: Path) -> None:
    command = ServerCommand.parse(f"{sys.executable} app.py --data '{{work_dir}}/in put' -v")
    assert command.argv("provider", 50006, tmp_path) == [
        sys.executable, "app.py", "--data", f"{tmp_path}/in put", "-v", "provider", "50006",
    ]  # fmt: skip


def test_the_module_form_is_golem_apps_serve_on_the_work_dir(tmp_path: Path) -> None:
    command = ServerCommand.serve("python3", "examples.mandelbrot:requestor", "INFO")
    assert command.argv("requestor", 50005, tmp_path) == [
        "python3", "-m", "golem_apps.serve", "examples.mandelbrot:requestor",
        "--work-dir", str(tmp_path), "--log-level", "INFO", "--tracebacks", "requestor", "50005",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "--provider-cmd is empty"),
        ("   ", "--provider-cmd is empty"),
        ("python 'app.py", '--provider-cmd: cannot parse "python \'app.py": No closing quotation'),
        ("no-such-program-here --x", "--provider-cmd: command 'no-such-program-here' not found"),
    ],
)
def test_unusable_commands_are_refused_naming_the_option(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        ServerCommand.parse(text, "--provider-cmd")
    assert str(caught.value).startswith(message)
