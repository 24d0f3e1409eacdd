"""The admin commands as an administrator types them, each a child process of this tree:
``containers list|destroy`` against a running admin channel (or none), ``regen-rsa`` and
``check``'s key line."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
from commands import run_command
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from serverharness import serve_stand_in

from anweddol_actors.cli.keyfiles import load_or_create_keys, load_private_key
from anweddol_actors.config import load_config
from anweddol_actors.protocol.crypto import fingerprint

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_command(*args, timeout=timeout)


@pytest.fixture
def config(tmp_path, socket_path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "container:\n"
        "  libvirt_uri: 'test:///default'\n"
        "server:\n"
        f"  database: '{tmp_path}/journal.sqlite3'\n"
        f"  public_rsa_key_file_path: '{tmp_path}/rsa/public.pem'\n"
        f"  private_rsa_key_file_path: '{tmp_path}/rsa/private.pem'\n"
        f"  admin_socket_path: '{socket_path}'\n"
    )
    return path


# -- containers ---------------------------------------------------------------------------


def test_containers_without_a_server_is_one_line(config, socket_path):
    result = cli("containers", "list", "-c", str(config))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (f"error: {socket_path}: no such socket (is the server running?)\n")
    result = cli("containers", "-c", str(config), "destroy", "some-uuid", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {
        "status": "ERROR",
        "message": "An error occured",
        "data": {"error": f"{socket_path}: no such socket (is the server running?)"},
    }


def test_containers_list_and_destroy(running, admin, config):
    result = cli("containers", "list", "-c", str(config))
    assert (result.returncode, result.stdout) == (0, "no live containers\n"), result.stderr

    container_uuid, _ = serve_stand_in(running.engine, client_ip="127.0.0.9")
    port = running.engine.registry.get(container_uuid).get().forwarder.port.get()
    result = cli("containers", "list", "-c", str(config))
    assert result.returncode == 0, result.stderr
    header, line = result.stdout.splitlines()
    assert header.split() == ["uuid", "host", "state", "age", "client", "port", "expires"]
    assert line.split()[:3] == [container_uuid, "local", "started_serving"]
    assert line.split()[4:] == ["127.0.0.9", str(port), "never"]

    listed = json.loads(cli("containers", "list", "--json", "-c", str(config)).stdout)
    assert (listed["status"], listed["message"]) == ("OK", "Live containers")
    [row] = listed["data"]["containers"]
    assert (row["uuid"], row["client"], row["port"]) == (container_uuid, "127.0.0.9", port)

    result = cli("containers", "destroy", container_uuid, "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"container {container_uuid} destroyed\n"
    assert running.engine.registry.count().get() == 0

    result = cli("containers", "destroy", container_uuid, "-c", str(config), "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["data"] == {"error": f"no live container {container_uuid}"}


# -- keys ---------------------------------------------------------------------------------


def test_regen_rsa_writes_a_new_pair(config, tmp_path):
    first = cli("regen-rsa", "-c", str(config), "--json")
    assert first.returncode == 0, first.stderr
    answer = json.loads(first.stdout)
    assert (answer["status"], answer["message"]) == ("OK", "RSA keys re-generated")
    private, public = tmp_path / "rsa" / "private.pem", tmp_path / "rsa" / "public.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    key = load_private_key(private)
    assert key.private_key.key_size == 4096
    assert answer["data"] == {"fingerprint": fingerprint(key.private_key), "restart_needed": False}
    # The public file is the private key's own half.
    assert fingerprint(load_pem_public_key(public.read_bytes())) == fingerprint(key.private_key)
    assert sorted(p.name for p in (tmp_path / "rsa").iterdir()) == ["private.pem", "public.pem"]

    second = cli("regen-rsa", "-c", str(config))
    assert second.returncode == 0, second.stderr
    new = fingerprint(load_private_key(private).private_key)
    assert new != answer["data"]["fingerprint"]
    assert f"fingerprint (SHA-256): {new}" in second.stdout
    assert "Clients that pinned the old key" in second.stdout
    assert "restarted" not in second.stdout  # no server answers on the admin socket


def test_regen_rsa_says_a_running_server_needs_a_restart(running, admin, config):
    result = cli("regen-rsa", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "it uses the old key until it is restarted" in result.stdout


def test_regen_rsa_in_an_unwritable_place_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"server:\n  private_rsa_key_file_path: '{blocker}/rsa/private.pem'\n"
        f"  public_rsa_key_file_path: '{blocker}/rsa/public.pem'\n"
        f"  admin_socket_path: '{tmp_path}/admin.sock'\n"
    )
    result = cli("regen-rsa", "-c", str(config))
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot write the RSA keys: ")
    assert len(result.stderr.splitlines()) == 1


def test_check_prints_the_key_fingerprint(config, tmp_path):
    before = cli("check", "-c", str(config))
    assert f"[ok  ] RSA key: {tmp_path}/rsa/private.pem absent: made at first start" in (
        before.stdout
    )
    assert before.stdout.startswith(f"configuration: {config}\n")
    assert "[ok  ] libvirt: test:///default answers" in before.stdout
    assert cli("regen-rsa", "-c", str(config)).returncode == 0
    made = fingerprint(load_private_key(tmp_path / "rsa" / "private.pem").private_key)
    after = cli("check", "-c", str(config), "--json")
    answer = json.loads(after.stdout)
    [key] = [c for c in answer["data"]["checks"] if c["name"] == "RSA key"]
    assert key["ok"] and key["detail"].endswith(f"fingerprint (SHA-256) {made}")
    assert answer["message"] in ("Check done", "Errors detected on server environment")
    assert answer["data"]["errors_recorded"] == len(answer["data"]["errors_list"])


def test_serve_makes_its_key_through_the_same_writer(tmp_path):
    """``serve``'s first start and ``regen-rsa`` write the same files the same way."""
    path = tmp_path / "config.yaml"
    path.write_text(
        f"server:\n  private_rsa_key_file_path: '{tmp_path}/k/private.pem'\n"
        f"  public_rsa_key_file_path: '{tmp_path}/k/public.pem'\n"
    )
    config = load_config(str(path))
    made = load_or_create_keys(config)
    assert stat.S_IMODE((tmp_path / "k" / "private.pem").stat().st_mode) == 0o600
    again = load_or_create_keys(config)  # the second start reads it
    assert fingerprint(again.private_key) == fingerprint(made.private_key)
