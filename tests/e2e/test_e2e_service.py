"""The service commands around a real container: ``start`` detaches a server on
qemu:///system, a client CREATEs a VM and logs in, ``status`` and ``containers list`` see
the container, ``stop`` ends it all: no process, no marked domain, no listening port, no
admin socket left behind."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
from commands import run_command
from probes import listening_ports, ssh_run
from serveprocess import write_config

from anweddol_actors.client import Client
from anweddol_actors.service import pidfile


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_command(*args, timeout=400)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def gone_or_zombie(pid: int, timeout: float = 10.0) -> bool:
    """The process ended: gone, or a zombie its new parent (init) has not reaped yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


@pytest.mark.vm
def test_start_create_status_stop(images, qemu, tmp_path):
    port = free_port()
    config = write_config(
        tmp_path,
        images["dev"],
        listen_port=port,
        pid_file_path=f"'{tmp_path}/run/server.pid'",
        log_file_path=f"'{tmp_path}/log/server.log'",
        admin_socket_path=f"'{tmp_path}/run/admin.sock'",
    )
    marked_before = set(qemu.list_marked())
    started = cli("start", "-c", str(config))
    assert started.returncode == 0, started.stdout + started.stderr
    pid = int((tmp_path / "run" / "server.pid").read_text())
    try:
        created = Client("127.0.0.1", port, timeout=240).create()
        assert created["success"] is True, created
        data = created["data"]
        login = ssh_run(
            data["container_listen_port"],
            data["container_username"],
            data["container_password"],
            "echo reached",
        )
        assert login == "reached"
        assert set(qemu.list_marked()) - marked_before == {data["container_uuid"]}
        forwarder = data["container_listen_port"]
        assert listening_ports(forwarder, forwarder) == {forwarder}

        status = cli("status", "-c", str(config), "--json")
        assert status.returncode == 0, status.stdout
        answer = json.loads(status.stdout)["data"]
        assert answer["pid"] == pid and answer["running"] is True
        assert answer["containers"] == 1, answer
        text = cli("status", "-c", str(config))
        assert text.stdout.startswith(f"running (PID {pid})")

        listed = cli("containers", "list", "-c", str(config), "--json")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        (entry,) = json.loads(listed.stdout)["data"]["containers"]
        assert entry["uuid"] == data["container_uuid"]
        assert (entry["port"], entry["client"]) == (forwarder, "127.0.0.1")
        table = cli("containers", "list", "-c", str(config))
        assert data["container_uuid"] in table.stdout and str(forwarder) in table.stdout
    finally:
        stopped = cli("stop", "-c", str(config))
    assert (stopped.returncode, stopped.stdout) == (0, "stopped\n"), stopped.stderr
    assert not pidfile.is_our_serve(pid)
    assert gone_or_zombie(pid)
    assert set(qemu.list_marked()) - marked_before == set()
    # Ours only: other processes of the host may take ephemeral ports in the e2e range.
    assert listening_ports(forwarder, forwarder) == set()
    assert listening_ports(port, port) == set()
    assert not (tmp_path / "run" / "server.pid").exists()
    assert not (tmp_path / "run" / "admin.sock").exists()
    log = (tmp_path / "log" / "server.log").read_text()
    assert "Traceback" not in log
    assert cli("status", "-c", str(config)).returncode == 3
