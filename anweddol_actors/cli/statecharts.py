"""``statecharts``: draw every lifecycle machine, or one entity's, as SVG and Mermaid.

With ``--entity`` the state comes from the journal: ``--db``, else ``server.database`` of
the configuration (``-c FILE``, else the system file, else the embedded default).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anweddol_actors
from anweddol_actors.cli import CliError
from anweddol_actors.cli.configfile import add_config_option, journal_database
from anweddol_actors.journal import Journal, JournalError
from anweddol_actors.lifecycle import KINDS
from anweddol_actors.lifecycle.render import RenderError, render_all, render_entity


def default_out_dir() -> Path:
    """The project's ``statecharts/`` in a source checkout, else ``./statecharts``."""
    root = Path(anweddol_actors.__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "statecharts").is_dir():
        return root / "statecharts"
    return Path.cwd() / "statecharts"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "statecharts",
        help="render the lifecycle machines (SVG and Mermaid)",
        description="Render every lifecycle machine to <kind>.svg and <kind>.mmd, or, with "
        "--entity, one entity's machine with its current state (from the journal) "
        "highlighted, to <kind>-<id>.svg and .mmd.",
    )
    parser.add_argument(
        "--out", type=Path, help="output folder (default: the project's statecharts/ folder)"
    )
    parser.add_argument("--entity", metavar="ID", help="render this entity's machine and state")
    parser.add_argument(
        "--kind", choices=KINDS, help="the entity's kind, when several kinds share its id"
    )
    add_config_option(parser)
    parser.add_argument(
        "--db",
        metavar="URL",
        help="journal database, with --entity (default: server.database of the configuration)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out_dir = args.out or default_out_dir()
    try:
        if args.entity is None:
            paths = render_all(out_dir)
        else:
            paths = _render_entity(args.entity, args.kind, journal_database(args), out_dir)
    except RenderError as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"cannot write {exc.filename or out_dir}: {exc.strerror}") from exc
    for path in paths:
        print(path)
    return 0


def _render_entity(entity_id: str, kind: str | None, db: str, out_dir: Path) -> list[Path]:
    try:
        with Journal(db, create=False) as journal:
            row = journal.entity(entity_id, kind=kind)
    except JournalError as exc:
        hint = " (pass --kind)" if kind is None and "several kinds" in str(exc) else ""
        raise CliError(f"{exc}{hint}") from exc
    if row is None:
        raise CliError(f"no entity {entity_id!r} in the journal {db}")
    return render_entity(row["kind"], row["entity_id"], row["state"], out_dir)
