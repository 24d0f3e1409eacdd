"""``python -m anweddol_actors hosts list|drain|enable``: the running server's hypervisor
hosts, through its admin socket (``server.admin_socket_path``).

``drain NAME``: no new container goes to that host (its live ones run until they end);
``enable NAME`` undoes it. Both are journalled: a drained host stays drained across
restarts. ``list --json`` prints the project's JSON shape (``status``, ``message``,
``data``) with ``data.hosts``: one object per host (``name``, ``libvirt_uri``,
``address``, ``enabled``, ``reachable``, ``containers``, ``max_containers``,
``free_slots``).
"""

from __future__ import annotations

import argparse

from anweddol_actors.cli.configfile import add_config_option, load
from anweddol_actors.cli.containers import failed
from anweddol_actors.cli.output import aligned, emit

COLUMNS = ("name", "uri", "address", "state", "reachable", "containers", "free slots")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "hosts",
        help="list, drain or enable the running server's hypervisor hosts",
        description="List the running server's hypervisor hosts, or drain one (no new "
        "containers there; the live ones run on) or enable it again, through its admin "
        "socket (server.admin_socket_path; root or the server's user only).",
    )
    add_config_option(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list the hosts")
    drain = actions.add_parser("drain", help="send no new container to a host")
    enable = actions.add_parser("enable", help="send new containers to a drained host again")
    for sub in (drain, enable):
        sub.add_argument("name", metavar="NAME", help="the host's name (see list)")
    for sub in (listing, drain, enable):
        add_config_option(sub)
        sub.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.admin.client import AdminError, ask

    path = load(args).config.server.admin_socket_path
    try:
        if args.action == "list":
            rows = ask(path, "hosts").get("hosts", [])
            return emit(args, "Hypervisor hosts", {"hosts": rows}, table(rows))
        row = ask(path, args.action, name=args.name).get("host", {})
    except AdminError as exc:
        return failed(args, str(exc))
    done = "drained: no new container goes there" if args.action == "drain" else "enabled"
    return emit(args, f"Host {done.split(':')[0]}", {"host": row}, f"host {args.name} {done}")


def table(rows: list[dict]) -> str:
    """The hosts as an aligned table, or a line saying there are none."""
    if not rows:
        return "no hosts"
    cells = [COLUMNS] + [
        (
            str(row.get("name")),
            str(row.get("libvirt_uri")),
            str(row.get("address")),
            "enabled" if row.get("enabled") else "draining",
            "yes" if row.get("reachable") else "NO",
            str(row.get("containers")),
            "no limit" if row.get("free_slots") is None else str(row["free_slots"]),
        )
        for row in rows
    ]
    return aligned(cells)
