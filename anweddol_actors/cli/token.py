"""``python -m anweddol_actors token``: manage access tokens (when the policy is enabled).

Tokens are printed once, at creation; only their SHA-256 is stored.
"""

from __future__ import annotations

import argparse

from anweddol_actors.cli import CliError
from anweddol_actors.cli.configfile import add_config_option, load
from anweddol_actors.cli.output import emit


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "token",
        help="manage access tokens",
        description="Create, list, enable, disable and delete access tokens.",
    )
    add_config_option(parser)
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="token database (default: access_token.access_token_database_file_path)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create a token and print it (once)")
    add.add_argument("--disabled", action="store_true", help="create it disabled")
    actions.add_parser("list", help="list the tokens' entry IDs (never the tokens)")
    for name in ("enable", "disable", "delete"):
        sub = actions.add_parser(name, help=f"{name} a token by entry ID")
        sub.add_argument("entry_id", type=int)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.policy.access_tokens import AccessTokenError, AccessTokenStore

    path = args.db
    if path is None:
        path = load(args).config.access_token.access_token_database_file_path
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
            entries = store.list()
            lines = (
                "\n".join(
                    f"{e.entry_id:>6}  {'enabled' if e.enabled else 'disabled':<8}  "
                    f"created {e.creation_timestamp}"
                    for e in entries
                )
                or "no access tokens"
            )
            return emit(
                args, "Recorded entries ID", {"entry_list": [e.entry_id for e in entries]}, lines
            )
        action = getattr(store, args.action)
        if not action(args.entry_id):
            raise CliError(f"no access token with entry ID {args.entry_id} in {path}")
        past = {"enable": "enabled", "disable": "disabled", "delete": "deleted"}[args.action]
        return emit(args, f"Entry ID was {past}", {}, f"entry {args.entry_id} {past}")
