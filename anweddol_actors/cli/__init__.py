"""Command line: ``python -m anweddol_actors SUBCOMMAND ...``.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the
parsed namespace and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from anweddol_actors import __version__
from anweddol_actors.errors import AnweddolError

# Order is the order shown by --help.
SUBCOMMANDS = ("serve", "client", "token", "statecharts", "journal", "image", "check")


class CliError(AnweddolError):
    """A problem the user can fix: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m anweddol_actors",
        description="Hand out short-lived, SSH-reachable virtual machines to network clients.",
    )
    parser.add_argument("--version", action="version", version=f"anweddol_actors {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"anweddol_actors.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"anweddol_actors.cli.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
