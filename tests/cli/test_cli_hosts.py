"""``hosts list|drain|enable`` as an administrator types them (child processes of this
tree), against the admin channel of a real server on two test-driver hosts: the table,
the JSON shape, a drain and an enable (journalled), an unknown name, no server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from commands import run_command
from hostsharness import hosts_server, node_host

from anweddol_actors.admin.server import AdminServer
from anweddol_actors.client import Client
from tests.guest.loopback_ssh import LoopbackSSH

KEYS = {
    "name",
    "libvirt_uri",
    "address",
    "enabled",
    "reachable",
    "containers",
    "max_containers",
    "free_slots",
}


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_command(*args, timeout=120)


@pytest.fixture
def socket_path(tmp_path) -> Path:
    return tmp_path / "run" / "admin.sock"


@pytest.fixture
def config(tmp_path, socket_path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "container:\n"
        "  libvirt_uri: 'test:///default'\n"
        "server:\n"
        f"  database: '{tmp_path}/cli-journal.sqlite3'\n"
        f"  public_rsa_key_file_path: '{tmp_path}/rsa/public.pem'\n"
        f"  private_rsa_key_file_path: '{tmp_path}/rsa/private.pem'\n"
        f"  admin_socket_path: '{socket_path}'\n"
    )
    return path


@pytest.fixture
def running(rsa, tmp_path, socket_path):
    """A started server on alpha (capacity 1) and beta (capacity 2), its admin channel
    on ``socket_path``; both closed at teardown."""
    with LoopbackSSH() as guest:
        hosts = (node_host(tmp_path, "alpha", 1), node_host(tmp_path, "beta", 2))
        running = hosts_server(rsa, tmp_path, guest.port, hosts).start()
        admin = AdminServer(running.engine, str(socket_path)).start()
        try:
            yield running
        finally:
            admin.close()
            if running.thread.is_alive():
                running.stop()


def listed(config: Path) -> list[dict]:
    result = cli("hosts", "list", "--json", "-c", str(config))
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["status"], shown["message"]) == ("OK", "Hypervisor hosts")
    return shown["data"]["hosts"]


def test_hosts_list_json_shape(running, config, tmp_path):
    created = Client(*running.address, timeout=30).create()
    assert created["success"] is True, created
    rows = listed(config)
    assert [row["name"] for row in rows] == ["alpha", "beta"]
    assert all(set(row) == KEYS for row in rows)
    alpha, beta = rows
    assert alpha["libvirt_uri"] == f"test://{tmp_path}/alpha.xml"
    assert (alpha["address"], alpha["enabled"], alpha["reachable"]) == ("127.0.0.1", True, True)
    # beta has the most free slots: the CREATE went there.
    assert (beta["containers"], beta["max_containers"], beta["free_slots"]) == (1, 2, 1)
    assert (alpha["containers"], alpha["max_containers"], alpha["free_slots"]) == (0, 1, 1)


def test_hosts_list_table(running, config, tmp_path):
    result = cli("hosts", "list", "-c", str(config))
    assert result.returncode == 0, result.stderr
    header, alpha, beta = result.stdout.splitlines()
    assert header.split() == [
        "name",
        "uri",
        "address",
        "state",
        "reachable",
        "containers",
        "free",
        "slots",
    ]
    assert alpha.split() == ["alpha", f"test://{tmp_path}/alpha.xml", "127.0.0.1", "enabled"] + [
        "yes",
        "0",
        "1",
    ]
    assert beta.split()[0] == "beta"


def test_drain_and_enable(running, config):
    result = cli("hosts", "drain", "beta", "-c", str(config))
    assert (result.returncode, result.stdout) == (
        0,
        "host beta drained: no new container goes there\n",
    ), result.stderr
    assert running.engine.journal.host_enabled("beta") is False
    rows = {row["name"]: row for row in listed(config)}
    assert (rows["alpha"]["enabled"], rows["beta"]["enabled"]) == (True, False)
    text = cli("hosts", "list", "-c", str(config)).stdout
    assert text.splitlines()[2].split()[3] == "draining"
    # STAT counts only the enabled host's room.
    assert Client(*running.address, timeout=30).stat()["data"]["available"] == 1

    result = cli("hosts", "enable", "beta", "--json", "-c", str(config))
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)["data"]["host"]
    assert (row["name"], row["enabled"]) == ("beta", True)
    assert running.engine.journal.host_enabled("beta") is True


@pytest.mark.parametrize("action", ["drain", "enable"])
def test_an_unknown_host_is_one_line_and_fails(running, config, action):
    result = cli("hosts", action, "gamma", "-c", str(config))
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr == "error: no host named 'gamma' (known: alpha, beta)\n"
    assert running.engine.journal.host_enabled("gamma") is True  # nothing journalled


def test_no_server_is_one_line(config):
    result = cli("hosts", "list", "-c", str(config))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "is the server running?" in result.stderr
    assert len(result.stderr.splitlines()) == 1
