"""``python -m anweddol_actors client {stat,create,destroy} HOST``: talk to a server."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from anweddol_actors.cli import CliError
from anweddol_actors.client import DEFAULT_PORT, DEFAULT_TIMEOUT, Client, ClientError
from anweddol_actors.protocol import crypto
from anweddol_actors.protocol.messages import CREATE_DATA_KEYS

# Extra CREATE data of newer servers: seconds, or null for no limit. Older servers send
# neither, and the protocol lets unknown keys through unchecked, so any value may come.
MAX_LIFETIME_KEY = "container_max_lifetime"
MAX_IDLE_TIME_KEY = "container_max_idle_time"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "client",
        help="send a STAT, CREATE or DESTROY request to a server",
        description="Send one request to an Anweddol server and print the response.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("host", metavar="HOST", help="server address")
    common.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"server port (default {DEFAULT_PORT})"
    )
    common.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for each answer of the server (default {DEFAULT_TIMEOUT:g})",
    )
    common.add_argument("--json", action="store_true", help="print the response as JSON")
    common.add_argument(
        "--key-size",
        type=int,
        default=crypto.DEFAULT_RSA_KEY_SIZE,
        metavar="BITS",
        help="size of the RSA key generated for the exchange (default 4096; 4096 takes seconds)",
    )
    common.add_argument(
        "--access-token", metavar="TOKEN", help="access token, if the server needs one"
    )

    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    verbs.add_parser("stat", parents=[common], help="server version, uptime and capacity")
    verbs.add_parser(
        "create", parents=[common], help="create a container and print its credentials"
    )
    destroy = verbs.add_parser("destroy", parents=[common], help="destroy a container")
    destroy.add_argument("--uuid", help="container UUID (from create)")
    destroy.add_argument("--token", help="client token (from create)")
    destroy.add_argument(
        "--credentials",
        metavar="FILE",
        type=Path,
        help="JSON printed by `create --json` (or its data part); '-' reads stdin",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not crypto.MIN_RSA_KEY_SIZE <= args.key_size <= crypto.MAX_RSA_KEY_SIZE:
        raise CliError(
            f"--key-size must be within {crypto.MIN_RSA_KEY_SIZE}..{crypto.MAX_RSA_KEY_SIZE}"
        )
    key = crypto.generate_private_key(args.key_size)
    client = Client(args.host, port=args.port, timeout=args.timeout, private_key=key)
    uuid = ""
    try:
        if args.verb == "stat":
            response = client.stat(access_token=args.access_token)
        elif args.verb == "create":
            response = client.create(access_token=args.access_token)
        else:
            uuid, token = _destroy_credentials(args)
            response = client.destroy(uuid, token, access_token=args.access_token)
    except ClientError as exc:
        raise CliError(str(exc)) from None

    if args.json:
        print(json.dumps(response, indent=2))
    elif not response["success"]:
        print(f"server refused: {response['message']}", file=sys.stderr)
    elif args.verb == "create":
        _print_created(args, response["data"])
    elif args.verb == "destroy":
        print(f"container {uuid} destroyed")
    else:
        _print_fields(response)
    return 0 if response["success"] else 1


def _destroy_credentials(args: argparse.Namespace) -> tuple[str, str]:
    if args.credentials is not None:
        if args.uuid or args.token:
            raise CliError("give either --credentials or --uuid and --token, not both")
        data = _read_credentials(args.credentials)
        try:
            return str(data["container_uuid"]), str(data["client_token"])
        except KeyError as exc:
            raise CliError(f"{args.credentials}: no {exc.args[0]} in the credentials") from None
    if not (args.uuid and args.token):
        raise CliError("destroy needs --uuid and --token, or --credentials FILE")
    return args.uuid, args.token


def _read_credentials(path: Path) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
        document = json.loads(text)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError(f"{path} is not JSON: {exc}") from None
    # Accept the whole response printed by `create --json` as well as its data part.
    if isinstance(document, dict) and isinstance(document.get("data"), dict):
        document = document["data"]
    if not isinstance(document, dict):
        raise CliError(f"{path}: expected a JSON object")
    return document


def _print_created(args: argparse.Namespace, data: dict[str, Any]) -> None:
    if "container_uuid" not in data:
        _print_fields({"message": "OK", "data": data})
        return
    print("container created")
    for key in CREATE_DATA_KEYS:
        print(f"  {key}: {data[key]}")
    for line in expiry_lines(data):
        print(f"  {line}")
    port = "" if args.port == DEFAULT_PORT else f" --port {args.port}"
    print()
    print("connect (the password is above):")
    print(f"  ssh -p {data['container_listen_port']} {data['container_username']}@{args.host}")
    print("destroy when done:")
    print(
        f"  python -m anweddol_actors client destroy {args.host}{port}"
        f" --uuid {data['container_uuid']} --token {data['client_token']}"
    )


def expiry_lines(data: dict[str, Any]) -> list[str]:
    """What CREATE data says about when the server destroys the container by itself."""
    lines = []
    if MAX_LIFETIME_KEY in data:
        value = data[MAX_LIFETIME_KEY]
        if value is None:
            lines.append("lifetime limit: none (no limit on total lifetime)")
        elif _is_seconds(value):
            lines.append(f"lifetime limit: destroyed {format_seconds(value)} after creation")
        else:
            lines.append(f"lifetime limit: not understood ({MAX_LIFETIME_KEY}: {value!r})")
    if MAX_IDLE_TIME_KEY in data:
        value = data[MAX_IDLE_TIME_KEY]
        port = data.get("container_listen_port")
        where = f"port {port}" if port is not None else "the SSH port"
        if value is None:
            lines.append("idle limit: none (kept however long it goes unused)")
        elif _is_seconds(value):
            lines.append(
                f"idle limit: destroyed after {format_seconds(value)} "
                f"with no connection open to {where}"
            )
        else:
            lines.append(f"idle limit: not understood ({MAX_IDLE_TIME_KEY}: {value!r})")
    return lines


def _is_seconds(value: Any) -> bool:
    # bool is an int subclass; `true` seconds would be a server bug, not one second.
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def format_seconds(seconds: float) -> str:
    """``"3600 s (1 h)"``: the exact value first, then a reading for people from a minute up."""
    # Not :g, which rounds to 6 digits and turns a week and a bit into 6.04801e+05.
    exact = f"{int(seconds) if float(seconds).is_integer() else float(seconds)} s"
    if seconds < 60:
        return exact
    remaining = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count} {unit}")
    return f"{exact} ({' '.join(parts)})"


def _print_fields(response: dict[str, Any]) -> None:
    print(response["message"])
    for key, value in response["data"].items():
        print(f"  {key}: {value}")
