"""``python -m anweddol_actors token``: manage access tokens (when the policy is enabled).

Tokens are printed once, at creation; only their SHA-256 is stored. The database is
``access_token.access_token_database_file_path`` of the configuration (``-c FILE``, given
before or after the action), or ``--db``.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from anweddol_actors.cli import CliError
from anweddol_actors.cli.configfile import add_config_option, load, say_source
from anweddol_actors.cli.output import emit


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "token",
        help="manage access tokens",
        description="Create, list, enable, disable and delete access tokens.",
    )
    _add_common_options(parser, default=None)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create a token and print it (once)")
    add.add_argument("--disabled", action="store_true", help="create it disabled")
    listing = actions.add_parser(
        "list", help="list the tokens' entry IDs, creation times and states (never the tokens)"
    )
    action_parsers = [add, listing]
    for name in ("enable", "disable", "delete"):
        sub = actions.add_parser(name, help=f"{name} a token by entry ID")
        sub.add_argument("entry_id", type=int)
        action_parsers.append(sub)
    # The options are also taken after the action (`token add -c FILE`): SUPPRESS keeps
    # an action parser from overwriting what was given before the action.
    for sub in action_parsers:
        _add_common_options(sub, default=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def _add_common_options(parser: argparse.ArgumentParser, default: object) -> None:
    add_config_option(parser)
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=default,
        help="token database (default: access_token.access_token_database_file_path)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if default is None else default,
        help="print JSON",
    )


def run(args: argparse.Namespace) -> int:
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.policy.access_tokens import AccessTokenError, AccessTokenStore

    path = args.db
    if path is None:
        loaded = load(args)
        say_source(args, loaded)
        path = loaded.config.access_token.access_token_database_file_path
    try:
        store = AccessTokenStore(path)
    except AccessTokenError as exc:
        raise CliError(str(exc)) from None
    with store:
        if args.action == "add":
            entry_id, token = store.add(disabled=args.disabled)
            return emit(
                args,
                "New access token created",
                {"entry_id": entry_id, "access_token": token},
                f"entry {entry_id}: {token}",
            )
        if args.action == "list":
            return list_entries(args, store.list())
        action = getattr(store, args.action)
        if not action(args.entry_id):
            raise CliError(f"no access token with entry ID {args.entry_id} in {store.path}")
        past = {"enable": "enabled", "disable": "disabled", "delete": "deleted"}[args.action]
        return emit(args, f"Entry ID was {past}", {}, f"entry {args.entry_id} {past}")


def list_entries(args: argparse.Namespace, entries: list) -> int:
    """``entry_list`` is the original's: ``[entry_id, creation_timestamp, enabled]`` per
    token (its ``listEntries()``), so that its scripts keep working; ``entries`` says the
    same with names, the creation time in ISO 8601 (UTC) and the state in words."""
    described = [
        {
            "entry_id": e.entry_id,
            "creation_timestamp": e.creation_timestamp,
            "created": _iso(e.creation_timestamp),
            "enabled": e.enabled,
            "state": "enabled" if e.enabled else "disabled",
        }
        for e in entries
    ]
    lines = [f"{d['entry_id']:>6}  {d['state']:<8}  created {d['created']}" for d in described]
    return emit(
        args,
        "Recorded entries ID",
        {
            "entry_list": [[e.entry_id, e.creation_timestamp, e.enabled] for e in entries],
            "entries": described,
        },
        "\n".join(lines) or "no access tokens",
    )


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
