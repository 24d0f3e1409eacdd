"""The REST API end to end: ``serve --web`` as a child process, a real CREATE over HTTP,
an SSH login with the credentials it returned, a DESTROY over HTTP; the container's
steps journalled, the HTTP session marked as such, nothing left in libvirt. And a CREATE
whose HTTP client hangs up while its VM boots: unwound whole."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading

import httpx
import pytest
from probes import login_fails, refuses, ssh_run
from serveprocess import ServeProcess, write_config
from serverharness import serve_web, wait_for
from test_e2e_containers import assert_nothing_left

pytestmark = pytest.mark.vm


class WebServeProcess(ServeProcess):
    """``serve --web --web-port 0``: ``url`` is where its HTTP front end listens."""

    def __init__(self, config) -> None:
        super().__init__(config, extra=("--web", "--web-port", "0"))
        self.url = self.wait_for_line(r"web server on (http://\S+)", timeout=30).group(1)


def test_create_ssh_destroy_over_http(tmp_path, images, qemu):
    config = write_config(tmp_path, images["dev"])
    served = WebServeProcess(config)
    try:
        created = httpx.post(served.url + "/create", json={}, timeout=300)
        assert created.status_code == 200
        answer = created.json()
        assert answer["success"] is True, answer
        data = answer["data"]
        container_uuid, port = data["container_uuid"], data["container_listen_port"]
        assert container_uuid in qemu.list_marked()

        username, password = data["container_username"], data["container_password"]
        assert ssh_run(port, username, password, "id -un") == username

        bad = httpx.post(
            served.url + "/destroy",
            json={"container_uuid": container_uuid, "client_token": "x" * 255},
            timeout=60,
        )
        assert bad.status_code == 200 and bad.json()["message"] == "Bad authentication"

        destroyed = httpx.post(
            served.url + "/destroy",
            json={"container_uuid": container_uuid, "client_token": data["client_token"]},
            timeout=120,
        )
        assert destroyed.status_code == 200
        assert destroyed.json() == {"success": True, "message": "OK", "data": {}}
        assert container_uuid not in qemu.list_marked()
        assert refuses(port)
        assert login_fails(port, username, password)
    finally:
        assert served.stop() == 0, served.log
    with sqlite3.connect(tmp_path / "journal.sqlite3") as db:
        triggers = [
            row[0]
            for row in db.execute(
                "SELECT trigger FROM transitions WHERE entity_id = ? ORDER BY id",
                (container_uuid,),
            )
        ]
        sessions = [
            json.loads(row[0])
            for row in db.execute("SELECT data FROM entities WHERE kind = 'session'")
        ]
        live = db.execute("SELECT COUNT(*) FROM entities WHERE terminal = 0").fetchone()[0]
    assert triggers == ["create", "start", "administer", "serve", "stop", "destroy"]
    assert len(sessions) == 3 and all(s.get("transport") == "http" for s in sessions), sessions
    assert live == 0
    assert "transport=http" in served.log


def test_create_whose_http_client_hung_up_unwinds(make_vm_server, qemu):
    """The client leaves while its VM boots: the answer cannot be delivered, so the
    CREATE unwinds whole (domain, forwarder, credentials), as over TCP."""
    running = make_vm_server()
    booting, seen = threading.Event(), []

    def on_started(context, data):
        seen.append(data["container_instance"].getUUID())
        booting.set()

    running.server.setEventHandler("on_container_domain_started", on_started)
    errors = []
    running.server.setEventHandler("on_runtime_error", lambda context, data: errors.append(data))
    web = serve_web(running.engine)
    try:
        sock = socket.create_connection(("127.0.0.1", web.address[1]), timeout=10)
        sock.sendall(b"POST /create HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        assert booting.wait(120)
        sock.close()
        [container_uuid] = seen
        wait_for(lambda: errors, 240, "the undelivered CREATE reported")
        assert "ResponseNotDelivered" in repr(errors[0]["exception_object"])
        assert_nothing_left(running, qemu, container_uuid)
        journal = running.engine.journal
        assert not journal.has_credentials(container_uuid)
        entity = journal.entity(container_uuid, kind="container")
        assert entity["state"] == "destroyed"
        # Nothing in the journal says it served anybody.
        triggers = [row["trigger"] for row in journal.history(entity_id=container_uuid)]
        assert "serve" not in triggers and triggers[-2:] == ["fail", "destroy"], triggers
    finally:
        web.stop()
