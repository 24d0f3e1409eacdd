"""A server killed with SIGKILL leaks nothing: restarted on the same journal it either
adopts the containers still serving (their credentials keep working) or destroys them,
per ``server.on_start_live_containers``."""

from __future__ import annotations

import sqlite3

import pytest
from probes import login_fails, refuses, ssh_run
from serveprocess import ServeProcess, write_config
from serverharness import wait_for

pytestmark = pytest.mark.vm


def serving(database, container_uuid: str) -> bool:
    with sqlite3.connect(database) as db:
        row = db.execute(
            "SELECT state FROM entities WHERE entity_id = ?", (container_uuid,)
        ).fetchone()
    return row is not None and row[0] == "started_serving"


@pytest.mark.parametrize("mode", ["adopt", "destroy"])
def test_restart_after_sigkill(tmp_path, images, qemu, mode):
    config = write_config(tmp_path, images["dev"], mode)
    first = ServeProcess(config)
    second = None
    created_uuid = None
    try:
        created = first.client().create()
        assert created["success"] is True, created
        data = created["data"]
        created_uuid = data["container_uuid"]
        # The server journals `serve` once the response is delivered; killed before that
        # row, the container counts as never handed over (test_e2e_crash.py covers it).
        wait_for(lambda: serving(tmp_path / "journal.sqlite3", created_uuid), 10, "serve row")
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
