"""``journal``: print the recorded transitions, oldest first.

The journal is ``server.database`` of the configuration (``-c FILE``, else the system
file, else the embedded default), or ``--db``, which overrides it.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta

from anweddol_actors.cli import CliError
from anweddol_actors.cli.configfile import add_config_option, journal_database
from anweddol_actors.cli.output import emit
from anweddol_actors.journal import Journal, JournalError
from anweddol_actors.lifecycle import KINDS

COLUMNS = ("id", "time", "kind", "entity_id", "trigger", "source", "dest", "context", "details")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "journal",
        help="print the lifecycle history from the journal",
        description="Print the journalled transitions, oldest first, as a table or JSON.",
    )
    parser.add_argument("--entity", metavar="ID", help="only this entity's transitions")
    parser.add_argument("--kind", choices=KINDS, help="only this kind of entity")
    parser.add_argument(
        "--json", action="store_true", help="print JSON: data.transitions, the rows oldest first"
    )
    parser.add_argument(
        "--prune-days",
        type=_days,
        metavar="N",
        help="instead of printing: forget entities that ended more than N days ago "
        "(live ones are never touched)",
    )
    add_config_option(parser)
    parser.add_argument(
        "--db",
        metavar="URL",
        help="journal database (file path, sqlite:///PATH; default: server.database of "
        "the configuration)",
    )
    parser.set_defaults(func=run)


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"days must not be negative: {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    args.db = journal_database(args)
    if args.prune_days is not None:
        return prune(args)
    try:
        with Journal(args.db, create=False) as journal:
            rows = journal.history(entity_id=args.entity, kind=args.kind)
    except JournalError as exc:
        raise CliError(str(exc)) from exc
    text = format_table(rows) if rows else "(no transitions)"
    return emit(args, "Journal transitions", {"transitions": rows}, text)


def prune(args: argparse.Namespace) -> int:
    cutoff = datetime.now(UTC) - timedelta(days=args.prune_days)
    try:
        with Journal(args.db, create=False) as journal:
            count = journal.prune(cutoff)
    except JournalError as exc:
        raise CliError(str(exc)) from exc
    noun = "entity" if count == 1 else "entities"
    text = f"forgot {count} ended {noun} older than {cutoff:%Y-%m-%d %H:%M} UTC"
    return emit(args, "Journal pruned", {"pruned_entities": count}, text)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":")) if value else "-"
    return str(value)


def format_table(rows: list[dict]) -> str:
    """Rows as left-aligned columns under a header; details last so it may run long."""
    cells = [list(COLUMNS)] + [[_cell(row[column]) for column in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS) - 1)]
    return "\n".join(
        "  ".join(
            [cell.ljust(width) for cell, width in zip(line, widths, strict=False)] + [line[-1]]
        ).rstrip()
        for line in cells
    )
