"""A real CREATE and DESTROY through ``serve --log-file``: both request lines name the
container, and neither the client token nor the container password reaches the log."""

from __future__ import annotations

import json

import pytest
from servelog import LoggingServer

from anweddol_actors.client import Client

pytestmark = pytest.mark.vm

# Loopback ports for the forwarders: away from the other suites' ranges.
FORWARDER_PORTS = (43000, 43999)


def test_create_and_destroy_lines_hold_no_secret(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "container:\n"
        "  libvirt_uri: 'qemu:///system'\n"
        "  container_memory: 256\n"
        "  container_vcpus: 1\n"
        "server:\n"
        "  bind_address: 127.0.0.1\n"
        "  log_format: json\n"
        f"  database: '{tmp_path}/journal.sqlite3'\n"
        f"  public_rsa_key_file_path: '{tmp_path}/rsa/public.pem'\n"
        f"  private_rsa_key_file_path: '{tmp_path}/rsa/private.pem'\n"
        "port_forwarding:\n"
        f"  port_range: [{FORWARDER_PORTS[0]}, {FORWARDER_PORTS[1]}]\n"
        "  bind_address: 127.0.0.1\n"
    )
    log_file = tmp_path / "server.log"
    server = LoggingServer(config, log_file)
    try:
        client = Client("127.0.0.1", server.port, timeout=240)
        created = client.create()
        assert created["success"], created
        data = created["data"]
        destroyed = client.destroy(data["container_uuid"], data["client_token"])
        assert destroyed["success"], destroyed
    finally:
        assert server.stop() == 0

    text = log_file.read_text()
    requests = [
        record
        for record in map(json.loads, text.splitlines())
        if record["logger"] == "anweddol_actors.requests"
    ]
    assert [(r["verb"], r["outcome"], r["container"]) for r in requests] == [
        ("CREATE", "OK", data["container_uuid"]),
        ("DESTROY", "OK", data["container_uuid"]),
    ]
    assert data["client_token"] not in text
    assert data["container_password"] not in text
