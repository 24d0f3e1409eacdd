"""``python -m anweddol_actors containers list|destroy``: the running server's live
containers, through its admin socket (``server.admin_socket_path``).

Only root and the server's user may open the socket. ``destroy`` ends a container as its
client's DESTROY would, its seed events in ``CONTEXT_DEFERRED_CALL``.
"""

from __future__ import annotations

import argparse
import json
import sys

from anweddol_actors.cli.configfile import add_config_option, load
from anweddol_actors.cli.output import aligned, emit

COLUMNS = ("uuid", "host", "state", "age", "client", "port", "expires")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "containers",
        help="list or end the running server's containers",
        description="List the running server's live containers, or end one, through its "
        "admin socket (server.admin_socket_path; root or the server's user only).",
    )
    add_config_option(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list the live containers")
    destroy = actions.add_parser("destroy", help="end a live container (as its DESTROY would)")
    destroy.add_argument("uuid", metavar="UUID", help="the container's UUID (see list)")
    for sub in (listing, destroy):
        add_config_option(sub)
        sub.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.admin.client import AdminError, ask

    path = load(args).config.server.admin_socket_path
    try:
        if args.action == "list":
            rows = ask(path, "list").get("containers", [])
            return emit(args, "Live containers", {"containers": rows}, table(rows))
        # A guest's shutdown may take a while: more than a listing's wait.
        ask(path, "destroy", timeout=120.0, uuid=args.uuid)
    except AdminError as exc:
        return failed(args, str(exc))
    return emit(
        args, "Container destroyed", {"uuid": args.uuid}, f"container {args.uuid} destroyed"
    )


def failed(args: argparse.Namespace, error: str) -> int:
    """The server could not be asked or refused: one line (JSON: the error shape), exit 1."""
    if args.json:
        print(
            json.dumps({"status": "ERROR", "message": "An error occured", "data": {"error": error}})
        )
    else:
        print(f"error: {error}", file=sys.stderr)
    return 1


def table(rows: list[dict]) -> str:
    """The containers as an aligned table, or a line saying there are none. A ``front
    end`` column only when some container belongs to a named front end (several share the
    journal): a lone server's table stays as it was."""
    if not rows:
        return "no live containers"
    front_ends = any(row.get("front_end") is not None for row in rows)
    cells = [COLUMNS + (("front end",) if front_ends else ())] + [
        (
            str(row.get("uuid")),
            str(row.get("host") or "-"),
            str(row.get("state")),
            duration(row.get("age")),
            str(row.get("client") or "-"),
            str(row.get("port") or "-"),
            expiry(row),
        )
        + ((str(row.get("front_end") or "-"),) if front_ends else ())
        for row in rows
    ]
    return aligned(cells)


def expiry(row: dict) -> str:
    """When the container's limits end it: ``in 59m58s``, ``never``, or ``-`` for another
    front end's (its reaper knows, this server does not: ``age`` is None too)."""
    if row.get("expires_in") is not None:
        return f"in {duration(row['expires_in'])}"
    return "-" if row.get("age") is None else "never"


def duration(seconds: object) -> str:
    """``75`` -> ``1m15s``: short and exact to the second."""
    if not isinstance(seconds, int | float):
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
