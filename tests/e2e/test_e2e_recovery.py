"""A server killed with SIGKILL leaks nothing: restarted on the same journal it either
adopts the containers still serving (their credentials keep working) or destroys them,
per ``server.on_start_live_containers``."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest
from test_e2e_containers import login_fails, refuses, ssh_run

from anweddol_actors.client import Client

pytestmark = pytest.mark.vm


class ServeProcess:
    def __init__(self, config) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "anweddol_actors",
                "serve",
                "--config",
                str(config),
                "--port",
                "0",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = None
        deadline = time.monotonic() + 120
        while self.port is None:
            assert time.monotonic() < deadline, "server did not start"
            line = self.process.stderr.readline()
            assert line or self.process.poll() is None, "server exited"
            match = re.search(r"serving on [\d.]+:(\d+)", line)
            if match:
                self.port = int(match.group(1))

    def client(self) -> Client:
        return Client("127.0.0.1", self.port, timeout=240)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def write_config(tmp_path, images, mode: str):
    config = tmp_path / "config.yaml"
    config.write_text(
        "container:\n"
        "  libvirt_uri: 'qemu:///system'\n"
        f"  container_iso_file_path: '{images['dev']}'\n"
        "  container_memory: 256\n"
        "  container_vcpus: 1\n"
        "server:\n"
        "  bind_address: 127.0.0.1\n"
        f"  database: '{tmp_path}/journal.sqlite3'\n"
        f"  public_rsa_key_file_path: '{tmp_path}/rsa/public.pem'\n"
        f"  private_rsa_key_file_path: '{tmp_path}/rsa/private.pem'\n"
        f"  on_start_live_containers: {mode}\n"
        "port_forwarding:\n"
        "  port_range: [41000, 41999]\n"
        "  bind_address: 127.0.0.1\n"
    )
    return config


@pytest.mark.parametrize("mode", ["adopt", "destroy"])
def test_restart_after_sigkill(tmp_path, images, qemu, mode):
    config = write_config(tmp_path, images, mode)
    first = ServeProcess(config)
    second = None
    created_uuid = None
    try:
        created = first.client().create()
        assert created["success"] is True, created
        data = created["data"]
        created_uuid = data["container_uuid"]
        first.kill()
        # The domain outlives the killed server (transient domains belong to libvirtd).
        assert data["container_uuid"] in qemu.list_marked()
        second = ServeProcess(config)
        port, user, password = (
            data["container_listen_port"],
            data["container_username"],
            data["container_password"],
        )
        if mode == "adopt":
            assert data["container_uuid"] in qemu.list_marked()
            assert ssh_run(port, user, password, "id -un") == user
            destroyed = second.client().destroy(data["container_uuid"], data["client_token"])
            assert destroyed["success"] is True, destroyed
        else:
            assert data["container_uuid"] not in qemu.list_marked()
            assert refuses(port) or login_fails(port, user, password)
            denied = second.client().destroy(data["container_uuid"], data["client_token"])
            assert denied["message"] == "Bad authentication"
        assert data["container_uuid"] not in qemu.list_marked()
        assert refuses(port)
    finally:
        first.stop()
        if second is not None:
            second.stop()
        if created_uuid is not None:
            qemu.destroy_domain(created_uuid)  # idempotent: normally gone already
