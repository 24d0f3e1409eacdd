"""``python -m anweddol_actors front-ends list``: the front ends sharing the running
server's PostgreSQL journal, through its admin socket (``server.admin_socket_path``).

A front end is one ``serve`` process with a ``server.front_end`` name; it holds a lease in
the journal, renewed every third of it. ``list --json`` prints the project's JSON shape
(``status``, ``message``, ``data``) with ``data.front_ends``: one object per front end
(``name``, ``address``, ``lease_until`` in seconds since the epoch, ``taken_by``: the
front end that took over its containers once its lease ran out, ``expired``, and
``self``: whether it is the server asked). A server without a front-end name lists none.
"""

from __future__ import annotations

import argparse
import time

from anweddol_actors.cli.configfile import add_config_option, load
from anweddol_actors.cli.containers import duration, failed
from anweddol_actors.cli.output import aligned, emit

# "* NAME" marks the server asked, as `git branch` marks the current branch.
COLUMNS = ("  name", "address", "lease", "taken by")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "front-ends",
        help="list the front ends sharing the running server's journal",
        description="List the front ends (serve processes with a server.front_end name) "
        "that share the running server's PostgreSQL journal, their leases and takeovers, "
        "through its admin socket (server.admin_socket_path; root or the server's user "
        "only).",
    )
    add_config_option(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list the front ends")
    add_config_option(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.admin.client import AdminError, ask

    path = load(args).config.server.admin_socket_path
    try:
        rows = ask(path, "front_ends").get("front_ends", [])
    except AdminError as exc:
        return failed(args, str(exc))
    return emit(args, "Front ends", {"front_ends": rows}, table(rows, time.time()))


def table(rows: list[dict], now: float) -> str:
    """The front ends as an aligned table (``now``: this machine's clock, which the
    leases are read against), or a line saying there are none."""
    if not rows:
        return "no front ends (this server has no server.front_end name)"
    cells = [COLUMNS] + [
        (
            ("* " if row.get("self") else "  ") + str(row.get("name")),
            str(row.get("address") or "-"),
            lease_left(row, now),
            str(row.get("taken_by") or "-"),
        )
        for row in rows
    ]
    return aligned(cells)


def lease_left(row: dict, now: float) -> str:
    """What is left of a front end's lease: ``27s``, or ``expired``."""
    until = row.get("lease_until")
    if row.get("expired") or not isinstance(until, int | float) or until <= now:
        return "expired"
    return duration(until - now)
