"""The deployed server's policies (PROTOCOL.md §3) on real sockets: access tokens and the
IP filter, as `serve` installs them from the configuration."""

from __future__ import annotations

import socket

from rawpeer import closed_by_peer

from anweddol_actors.cli.serve import install_policies
from anweddol_actors.client import Client
from anweddol_actors.config import config_from_mapping
from anweddol_actors.policy.access_tokens import AccessTokenStore


def test_access_tokens(make_server, tmp_path):
    db = tmp_path / "tokens.sqlite3"
    with AccessTokenStore(db) as store:
        _, token = store.add()
        disabled_id, disabled = store.add(disabled=True)
    config = config_from_mapping(
        {"access_token": {"enabled": True, "access_token_database_file_path": str(db)}}
    )
    running = make_server(start=False)
    install_policies(running.server, config)
    running.start()
    client = Client(*running.address, timeout=5)
    assert client.stat()["message"] == "Bad request (Access token is required)"
    assert client.stat(access_token="x" * 124)["message"] == (
        "Bad authentication (Invalid access token)"
    )
    assert client.stat(access_token=disabled)["message"].startswith("Bad authentication")
    assert client.stat(access_token=token)["success"] is True
    with AccessTokenStore(db) as store:  # enabled from another process, in effect at once
        store.enable(disabled_id)
    assert client.stat(access_token=disabled)["success"] is True


def test_ip_filter_refuses_before_the_key_exchange(make_server):
    config = config_from_mapping(
        {"ip_filter": {"enabled": True, "denied_ip_list": ["127.0.0.0/8"], "allowed_ip_list": []}}
    )
    running = make_server(start=False)
    install_policies(running.server, config)
    events = []
    running.server.setEventHandler("on_connection_accepted", lambda **kw: events.append(kw))
    running.start()
    sock = socket.create_connection(running.address, timeout=5)
    assert closed_by_peer(sock)
    sock.close()
    assert events == []  # refused by the listener: no session, no event


def test_ip_filter_allows_listed_addresses(make_server):
    config = config_from_mapping(
        {
            "ip_filter": {
                "enabled": True,
                "denied_ip_list": ["any"],
                "allowed_ip_list": ["127.0.0.1"],
            }
        }
    )
    running = make_server(start=False)
    install_policies(running.server, config)
    running.start()
    assert Client(*running.address, timeout=5).stat()["success"] is True
