"""The warm pool with real guests, against ``serve`` with the shipped default (a pool of
one): the pooled container is handed over by CREATE and logs in with the credentials the
CREATE returns, the pool refills, and a restart destroys a pooled container no client
held. Nothing is timed here (benchmarks/ and ``bench`` measure the warm CREATE)."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest
from commands import run_command
from probes import ssh_run
from serveprocess import ServeProcess, write_config
from serverharness import wait_for

pytestmark = pytest.mark.vm


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_command(*args, timeout=180)


def warm_pool(config) -> dict:
    answer = cli("status", "--json", "-c", str(config))
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)["data"]["warm_pool"]


def wait_pool_ready(config) -> None:
    # A boot is ~6 s here; generous for a loaded 2-core machine.
    wait_for(lambda: warm_pool(config)["ready"] == 1, 240, "a ready pooled container")


def triggers(database, entity_id: str) -> list[str]:
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT trigger FROM transitions WHERE entity_id = ? ORDER BY id", (entity_id,)
        ).fetchall()
    return [row[0] for row in rows]


def pooled_uuid(database) -> str:
    with sqlite3.connect(database) as db:
        [(entity_id,)] = db.execute(
            "SELECT entity_id FROM entities WHERE kind = 'container' AND state = 'started_pooled'"
        ).fetchall()
    return entity_id


def test_create_takes_the_pooled_container_and_the_pool_refills(tmp_path, images, qemu):
    socket_path = tmp_path / "run" / "admin.sock"
    config = write_config(
        tmp_path, images["dev"], warm_pool_size=None, admin_socket_path=f"'{socket_path}'"
    )
    database = tmp_path / "journal.sqlite3"
    served = ServeProcess(config)
    made: list[str] = []
    try:
        wait_pool_ready(config)
        status = cli("status", "-c", str(config))
        assert "warm pool:        1 of 1 ready, 0 filling" in status.stdout, status.stdout
        for _ in range(2):
            waiting = pooled_uuid(database)
            created = served.client().create()
            assert created["success"] is True, created
            data = created["data"]
            made.append(data["container_uuid"])
            assert data["container_uuid"] == waiting  # warm: the pooled one
            user, password = data["container_username"], data["container_password"]
            assert ssh_run(data["container_listen_port"], user, password, "id -un") == user
            assert triggers(database, waiting)[:5] == [
                "create",
                "start",
                "administer",
                "pool",
                "serve",
            ]
            # The refill is nobody's: not listed as a client's container.
            listed = cli("containers", "list", "--json", "-c", str(config))
            assert listed.returncode == 0, listed.stderr
            rows = json.loads(listed.stdout)["data"]["containers"]
            assert {row["uuid"] for row in rows} == set(made)
            wait_pool_ready(config)
        for container_uuid in made:
            assert container_uuid in qemu.list_marked()
    finally:
        served.stop()
    # The stop ended the clients' containers and the pool's.
    with sqlite3.connect(database) as db:
        live = db.execute(
            "SELECT entity_id, state FROM entities WHERE kind = 'container' "
            "AND state != 'destroyed'"
        ).fetchall()
    assert live == []
    for container_uuid in made:
        assert container_uuid not in qemu.list_marked()


def test_a_restart_destroys_the_pooled_container(tmp_path, images, qemu):
    socket_path = tmp_path / "run" / "admin.sock"
    config = write_config(
        tmp_path, images["dev"], warm_pool_size=None, admin_socket_path=f"'{socket_path}'"
    )
    database = tmp_path / "journal.sqlite3"
    first = ServeProcess(config)
    second = None
    waiting = None
    try:
        wait_pool_ready(config)
        waiting = pooled_uuid(database)
        first.kill()
        assert waiting in qemu.list_marked()  # the domain outlives the killed server
        # Restarted without a pool, so that nothing new boots while this is checked.
        config = write_config(
            tmp_path, images["dev"], warm_pool_size=0, admin_socket_path=f"'{socket_path}'"
        )
        second = ServeProcess(config)
        assert waiting not in qemu.list_marked()
        assert triggers(database, waiting)[-3:] == ["pool", "fail", "destroy"]
        assert triggers(database, f"{waiting}.forwarder")[-2:] == ["fail", "destroy"]
    finally:
        first.stop()
        if second is not None:
            second.stop()
        if waiting is not None:
            qemu.destroy_domain(waiting)  # idempotent: normally gone already
