"""Command line: ``python -m anweddol_actors SUBCOMMAND ...``.

Each module of this package named in ``COMMANDS`` exposes ``register(subparsers)``, which
adds the parsers of its commands and sets ``func`` on each (a callable taking the parsed
namespace and returning an exit code). ``--json`` output goes through ``cli.output``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from anweddol_actors import __version__
from anweddol_actors.errors import AnweddolError

# Command -> the module of this package that registers it; order is the order of --help.
COMMANDS: dict[str, str] = {
    "serve": "serve",
    "start": "service",
    "stop": "service",
    "restart": "service",
    "status": "service",
    "client": "client",
    "token": "token",
    "statecharts": "statecharts",
    "journal": "journal",
    "image": "image",
    "check": "check",
    "config": "config",
    "containers": "containers",
    "hosts": "hosts",
    "front-ends": "front_ends",
    "regen-rsa": "keys",
    "bench": "bench",
}
SUBCOMMANDS = tuple(COMMANDS)


class CliError(AnweddolError):
    """A problem the user can fix: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m anweddol_actors",
        description="Hand out short-lived, SSH-reachable virtual machines to network clients.",
    )
    parser.add_argument("--version", action="version", version=f"anweddol_actors {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(f"anweddol_actors.cli.{name}").register(subparsers)
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
        if getattr(args, "json", False):
            # The original's JSON error shape (reference/cli_json_output.md), on stdout.
            print(
                json.dumps(
                    {"status": "ERROR", "message": "An error occured", "data": {"error": str(exc)}}
                )
            )
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
