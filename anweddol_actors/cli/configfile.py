"""Which configuration a command reads, and the ``-c FILE`` option that chooses it.

``-c FILE`` when given; else the system file (``/etc/anweddol_actors/config.yaml``, or the
path in ``ANWEDDOL_ACTORS_CONFIG``) when it exists; else the embedded default. A command
says which at start (``LoadedConfig.source``), so that a host where the file went missing
does not silently run on defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from anweddol_actors.cli import CliError

SYSTEM_CONFIG_PATH = "/etc/anweddol_actors/config.yaml"
# Overrides the system file's place (a second instance, a test): not the same as -c, which
# must exist; this one is used only when it exists, like the system file.
CONFIG_ENVIRONMENT = "ANWEDDOL_ACTORS_CONFIG"


@dataclass
class LoadedConfig:
    config: object  # anweddol_actors.config.ServerConfig
    path: str | None  # None: the embedded default
    # One line each: keys whose meaning changed from the original, or accepted and not
    # acted on (the command prints or logs them).
    warnings: list[str] = field(default_factory=list)
    # ``section.key`` of every key the file set (none for the embedded default).
    given: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        """Where the configuration came from, for the command's first line."""
        if self.path is None:
            return f"embedded default (no {system_config_path()})"
        return self.path


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``-c FILE`` / ``--config FILE`` on ``parser``."""
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"configuration file (default: {SYSTEM_CONFIG_PATH} when it exists, "
        "else the embedded default)",
    )


def system_config_path() -> str:
    return os.environ.get(CONFIG_ENVIRONMENT) or SYSTEM_CONFIG_PATH


def config_path(args: argparse.Namespace) -> str | None:
    """The file to read: ``-c``'s, else the system file if it exists, else None."""
    explicit = getattr(args, "config", None)
    if explicit is not None:
        return explicit
    system = system_config_path()
    return system if Path(system).exists() else None


def load(args: argparse.Namespace, *, check_host: bool = False) -> LoadedConfig:
    """Load the configuration the command was given; a ``CliError`` naming the problem.

    ``check_host``: also refuse what this machine cannot honour (``config.host``: a
    ``domain_type: kvm`` without working KVM), for the commands that serve.
    """
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.config import ConfigError, read_config
    from anweddol_actors.config.host import domain_type_problem

    path = config_path(args)
    try:
        loaded = read_config(path)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if check_host:
        problem = domain_type_problem(loaded.config)
        if problem:
            raise CliError(f"{loaded.name}: {problem}")
    return LoadedConfig(loaded.config, path, list(loaded.warnings), loaded.given)


def say_source(args: argparse.Namespace, loaded: LoadedConfig) -> None:
    """``configuration: SOURCE`` on standard error (standard output stays the command's
    result, for scripts); nothing with ``--json``."""
    if not getattr(args, "json", False):
        print(f"configuration: {loaded.source}", file=sys.stderr)


def journal_database(args: argparse.Namespace) -> str:
    """The journal a command reads: ``--db`` when given, else ``server.database`` of the
    configuration (which it names on standard error)."""
    if getattr(args, "db", None):
        return args.db
    loaded = load(args)
    say_source(args, loaded)
    return loaded.config.server.database
