"""``python -m anweddol_actors regen-rsa``: a new RSA-4096 key pair for the server.

Written where the configuration says (``server.private_rsa_key_file_path``, 0600, and
``server.public_rsa_key_file_path``), each file replaced whole (``cli/keyfiles.py``). A
running server keeps the key it loaded until it restarts; clients that pinned the old key
refuse the new one until they are given its fingerprint.
"""

from __future__ import annotations

import argparse

from anweddol_actors.cli import CliError
from anweddol_actors.cli.configfile import add_config_option, load
from anweddol_actors.cli.output import emit


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "regen-rsa",
        help="make a new RSA key pair for the server and print its fingerprint",
        description="Replace the server's RSA key pair (the configured paths) with a new "
        "RSA-4096 pair and print its SHA-256 fingerprint. A running server uses it after a "
        "restart.",
    )
    add_config_option(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.admin.client import AdminError, ask
    from anweddol_actors.cli.keyfiles import key_fingerprint, write_key_pair
    from anweddol_actors.core.crypto import RSAWrapper

    loaded = load(args)
    server = loaded.config.server
    wrapper = RSAWrapper(key_size=4096)
    try:
        write_key_pair(
            wrapper,
            server.private_rsa_key_file_path,
            server.public_rsa_key_file_path,
            replace=True,
        )
    except OSError as exc:
        raise CliError(f"cannot write the RSA keys: {exc}") from None
    fingerprint = key_fingerprint(wrapper)
    try:
        ask(server.admin_socket_path, "status", timeout=5.0)
        running = True
    except AdminError:
        running = False
    lines = [
        f"configuration: {loaded.source}",
        f"new RSA-4096 key pair: {server.private_rsa_key_file_path} (0600), "
        f"{server.public_rsa_key_file_path}",
        f"fingerprint (SHA-256): {fingerprint}",
        "Clients that pinned the old key refuse this one: give them the fingerprint above.",
    ]
    if running:
        lines.append(
            f"A server answers on {server.admin_socket_path}: it uses the old key until it "
            "is restarted."
        )
    if server.enable_onetime_rsa_keys:
        lines.append(
            "server.enable_onetime_rsa_keys is true: the server makes a new pair at each "
            "start and does not read these files."
        )
    return emit(
        args,
        "RSA keys re-generated",
        {"fingerprint": fingerprint, "restart_needed": running},
        "\n".join(lines),
    )
