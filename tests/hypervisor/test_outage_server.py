"""A server whose libvirt does not answer: it starts and serves STAT, answers CREATE and
DESTROY ``Unavailable (hypervisor unreachable)`` without touching the credentials or the
journal's containers, and runs the start's reconciliation once libvirt answers.

libvirt is reached through a relay socket (tests/libvirtd.py): stopped, it is a real
endpoint nobody listens on; started, it is libvirtd. No VM is made: the earlier run's
container is a journal row whose domain is long gone.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import uuid

from libvirtd import RECONNECT_BOUND
from serverharness import RunningServer, wait_for

from anweddol_actors.client import Client
from anweddol_actors.core.server import ServerInterface
from anweddol_actors.engine.settings import Settings
from anweddol_actors.engine.verbs import new_client_token
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle

UNAVAILABLE = "Unavailable (hypervisor unreachable)"


def earlier_run(database: str) -> tuple[str, str, str]:
    """A journal as a crashed run leaves it: a serving container with credentials, and a
    session cut mid-request. Returns (container uuid, its token, the session id)."""
    container_uuid, token, session_id = str(uuid.uuid4()), new_client_token(), uuid.uuid4().hex
    with Journal(database) as journal:
        container = Lifecycle("container", container_uuid, journal)
        container.create(data={"domain_uuid": container_uuid})
        for trigger in ("start", "administer", "serve"):
            container.fire(trigger)
        journal.store_credentials(container_uuid, token)
        session = Lifecycle("session", session_id, journal)
        session.create()
        session.fire("start")
    return container_uuid, token, session_id


def serve(rsa, database: str, uri: str) -> RunningServer:
    settings = Settings(
        database=database, libvirt_uri=uri, domain_type="qemu", reaper_poll_interval=0.5
    )
    server = ServerInterface(
        "/nonexistent/container.iso", "127.0.0.1", 0, 5, runtime_rsa_wrapper=rsa, settings=settings
    )
    return RunningServer(server).start()


def test_unreachable_at_start_then_reachable(tmp_path, rsa, relay):
    database = str(tmp_path / "journal.sqlite3")
    container_uuid, token, session_id = earlier_run(database)
    running = serve(rsa, database, relay.uri)  # the relay is not listening yet
    try:
        context = running.engine.context
        client = Client(*running.address, timeout=30)
        stat = client.stat()
        assert stat["success"] is True, stat
        available = stat["data"]["available"]

        created = client.create()
        assert (created["success"], created["message"]) == (False, UNAVAILABLE)
        destroyed = client.destroy(container_uuid, token)
        assert (destroyed["success"], destroyed["message"]) == (False, UNAVAILABLE)
        # Nothing was touched: the credentials verify, the earlier run is not reconciled,
        # no container was journalled, no slot is held.
        journal = context.journal
        assert journal.verify_credentials(container_uuid, token)
        assert journal.entity(container_uuid)["state"] == "started_serving"
        assert journal.entity(session_id)["state"] != "destroyed"
        assert [row["entity_id"] for row in journal.live_entities("container")] == [container_uuid]
        assert client.stat()["data"]["available"] == available
        assert not context.recovered.is_set()

        relay.start()
        wait_for(context.recovered.is_set, RECONNECT_BOUND, "recovery after libvirt answers")
        # on_start_live_containers: destroy (the default): its domain is gone anyway.
        assert journal.entity(container_uuid)["state"] == "destroyed"
        assert journal.entity(session_id)["state"] == "destroyed"
        assert not journal.verify_credentials(container_uuid, token)
        assert client.destroy(container_uuid, token)["message"] == "Bad authentication"
    finally:
        running.stop()


def test_outage_while_serving(tmp_path, rsa, relay):
    """Reachable at start, then lost: CREATE and DESTROY answer Unavailable until libvirt
    is back, the credentials kept; then they are served again."""
    relay.start()
    database = str(tmp_path / "journal.sqlite3")
    running = serve(rsa, database, relay.uri)
    try:
        context = running.engine.context
        assert context.recovered.is_set()
        container_uuid, token = str(uuid.uuid4()), new_client_token()
        context.journal.store_credentials(container_uuid, token)
        client = Client(*running.address, timeout=30)

        relay.stop()
        wait_for(lambda: not context.hypervisors.reachable(), 10, "loss noticed")
        assert client.create()["message"] == UNAVAILABLE
        assert client.destroy(container_uuid, token)["message"] == UNAVAILABLE
        assert context.journal.verify_credentials(container_uuid, token)
        assert client.stat()["success"] is True

        relay.start()
        wait_for(context.hypervisors.reachable, RECONNECT_BOUND, "reconnection")
        # Served again: this container has no registry entry (made by hand above), so the
        # DESTROY deletes its credentials and answers OK.
        assert client.destroy(container_uuid, token)["message"] == "OK"
        assert not context.journal.verify_credentials(container_uuid, token)
    finally:
        running.stop()


def test_serve_without_libvirt_answers_and_ends_on_sigterm(tmp_path):
    """``serve`` whose libvirt never answers: it serves, refuses CREATE with the reason,
    and SIGTERM ends it promptly (no start-up wait, no reconnection thread holding it)."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "container:\n"
        "  libvirt_uri: 'qemu:///system?socket=/tmp/nothing.sock'\n"
        f"  container_iso_file_path: '{tmp_path}/container.iso'\n"
        "server:\n"
        "  bind_address: 127.0.0.1\n"
        f"  database: '{tmp_path}/journal.sqlite3'\n"
        "  enable_onetime_rsa_keys: true\n"
    )
    (tmp_path / "container.iso").write_bytes(b"")  # never read: no domain is made
    process = subprocess.Popen(
        [sys.executable, "-m", "anweddol_actors", "serve", "-c", str(config), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    try:

        def port() -> int | None:
            for line in list(lines):
                match = re.search(r"serving on [\d.]+:(\d+)", line)
                if match:
                    return int(match.group(1))
            return None

        wait_for(lambda: port() is not None or process.poll() is not None, 60, "serving")
        assert port() is not None, "".join(lines)
        client = Client("127.0.0.1", port(), timeout=30)
        assert client.stat()["success"] is True
        assert client.create()["message"] == UNAVAILABLE
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    reader.join(timeout=10)
    assert "retrying in the background" in "".join(lines)
