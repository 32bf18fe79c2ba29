"""``golem-apps COMMAND ...`` (or ``python -m golem_apps COMMAND ...``): the commands in one.

Each command takes exactly the arguments of its ``python -m golem_apps.COMMAND``
form, and exits the same way. Only the chosen command's module is imported, so
``golem-apps serve ... provider PORT`` starts as fast as the ``-m`` form.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from ._cli import Parser, RawDescriptionHelpFormatter
from ._exceptions import UsageError

PROG = "golem-apps"

#: The commands, each a ``golem_apps.<name>`` module with ``main(argv, prog=...)``.
COMMANDS = {
    "serve": "serve an app's requestor or provider, as a Golem node starts it",
    "run": "run one task of an app on this machine, as a Golem node would",
    "appdef": "write an app's definition (and a Dockerfile) for a Golem node",
}


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``golem-apps``: a command, then that command's own arguments."""
    parser = Parser(
        prog=PROG,
        description="Write, run and deploy Golem task-api apps.",
        epilog="Commands:\n"
        + "\n".join(f"  {name:8} {text}" for name, text in COMMANDS.items())
        + f"\n\nSee '{PROG} COMMAND --help' for a command's options.",
        formatter_class=RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "command", nargs="?", choices=COMMANDS, metavar="COMMAND", help=", ".join(COMMANDS)
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's arguments")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``golem-apps``; returns the exit code (serve and run end the process themselves)."""
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError(f"a command is required: {', '.join(COMMANDS)} (see {PROG} --help)")
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        # As `python -m` does: the app's module imports from the current folder.
        sys.path.insert(0, str(Path.cwd()))
    command = importlib.import_module(f"golem_apps.{args.command}")
    code: int = command.main(args.args, prog=f"{PROG} {args.command}")
    finish = getattr(command, "finish", None)
    if finish is not None:
        finish(code)  # as its `python -m` form ends: no interpreter teardown
    return code


if __name__ == "__main__":
    sys.exit(main())
