"""An administrator ends a client's container from the command line: a real ``serve``, a
real CREATE, ``containers list`` showing it, ``containers destroy`` ending it whole."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest
from commands import run_command
from probes import refuses
from serveprocess import ServeProcess, write_config
from serverharness import wait_for

from anweddol_actors.lifecycle.events import CONTEXT_DEFERRED_CALL

pytestmark = pytest.mark.vm


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_command(*args, timeout=180)


def stop_rows(database, container_uuid: str) -> list[tuple[str, int, str]]:
    with sqlite3.connect(database) as db:
        return db.execute(
            "SELECT entity_id, context, details FROM transitions "
            "WHERE entity_id IN (?, ?) AND trigger = 'stop' ORDER BY id",
            (container_uuid, f"{container_uuid}.forwarder"),
        ).fetchall()


def test_containers_list_and_destroy_against_serve(tmp_path, images, qemu):
    socket_path = tmp_path / "run" / "admin.sock"
    config = write_config(tmp_path, images["dev"], admin_socket_path=f"'{socket_path}'")
    served = ServeProcess(config)
    try:
        served.wait_for_line(r"admin socket: ", timeout=30)
        created = served.client().create()
        assert created["success"] is True, created
        data = created["data"]
        container_uuid, port = data["container_uuid"], data["container_listen_port"]

        listed = cli("containers", "list", "--json", "-c", str(config))
        assert listed.returncode == 0, listed.stderr
        [row] = json.loads(listed.stdout)["data"]["containers"]
        assert row["uuid"] == container_uuid
        assert row["port"] == port
        assert row["client"] == "127.0.0.1"
        assert row["state"] == "started_serving"
        table = cli("containers", "list", "-c", str(config))
        assert container_uuid in table.stdout and str(port) in table.stdout

        destroyed = cli("containers", "destroy", container_uuid, "-c", str(config))
        assert destroyed.returncode == 0, destroyed.stderr
        assert destroyed.stdout == f"container {container_uuid} destroyed\n"

        assert container_uuid not in qemu.list_marked()
        assert refuses(port)
        rows = stop_rows(tmp_path / "journal.sqlite3", container_uuid)
        assert {entity for entity, _, _ in rows} == {container_uuid, f"{container_uuid}.forwarder"}
        for _entity, context, details in rows:
            assert context == CONTEXT_DEFERRED_CALL
            assert json.loads(details)["reason"] == "asked by the administrator"
        # The client's credentials no longer work.
        denied = served.client().destroy(container_uuid, data["client_token"])
        assert denied["message"] == "Bad authentication", denied
        again = json.loads(cli("containers", "list", "--json", "-c", str(config)).stdout)
        assert again["data"]["containers"] == []
    finally:
        assert served.stop() == 0, served.log
    # The socket goes with the server.
    wait_for(lambda: not socket_path.exists(), 10, "admin socket removed")
    assert "admin commands unavailable" not in served.log
