"""Kill -9 at every step: the server is SIGKILLed at each step of a CREATE and of a
DESTROY, under each recovery policy, then restarted on the same journal; nothing it made
may be left unaccounted for.

The server runs as a child process (`serve`) with a crash-test pause step
(``ANWEDDOL_ACTORS_TEST_PAUSE_AT``, ``engine/pause.py``); when its log says the step is
reached, the test kills it. After the restart:

- no marked domain without a live container in the journal, and no live container
  without its running domain;
- no listening forwarder port without a live forwarder, and none of those without its port;
- credentials stored exactly for the survivors; the client's token works for a survivor
  and is refused for the others;
- the journal consistent: each entity's state is the destination of its last
  transition; no session or shell of the killed run left live;
- a new CREATE works (SSH login checked) and is destroyed.

The table (step × policy → outcome) is printed at the end of the run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from probes import listening_ports, login_fails, refuses, ssh_run
from serveprocess import ServeProcess, write_config

from anweddol_actors.engine.pause import CREATE_STEPS, DESTROY_STEPS

pytestmark = pytest.mark.vm

# The forwarders' ports in these tests: a range of their own, so that the listening ports
# seen are theirs alone.
PORTS = (46000, 46099)
MODES = ("adopt", "destroy")

# What the table says per (step, policy); filled by the tests, printed by conftest.
CRASH_TABLE: dict[tuple[str, str], str] = {}


def expected_outcome(step: str, mode: str) -> str:
    """Only a container its client holds survives, and only under ``adopt``: its CREATE
    response was delivered, and no DESTROY had begun forgetting its token."""
    held = step in ("create:response_sent", "destroy:authenticated")
    return "adopted" if mode == "adopt" and held else "destroyed"


@pytest.fixture(scope="module")
def key_folder(tmp_path_factory):
    """One RSA key pair for every server of the module (a 4096-bit one per start is slow)."""
    folder = tmp_path_factory.mktemp("rsa")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (folder / "private.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (folder / "public.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return folder


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Background:
    """A client call on its own thread: it blocks while the server is paused."""

    def __init__(self, call) -> None:
        self.result: dict | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call) -> None:
        try:
            self.result = call()
        except BaseException as exc:  # noqa: BLE001 - a killed server cuts the call
            self.error = exc

    def join(self) -> None:
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the client call did not end"


def check_after_restart(
    database, qemu, baseline: set[str], survivors: set[str], server: ServeProcess
) -> None:
    with sqlite3.connect(database) as db:
        entities = db.execute(
            "SELECT kind, entity_id, state, terminal, data FROM entities"
        ).fetchall()
        last_dest = dict(
            db.execute(
                "SELECT entity_id, dest FROM transitions WHERE id IN "
                "(SELECT MAX(id) FROM transitions GROUP BY entity_id)"
            ).fetchall()
        )
        credentials = {row[0] for row in db.execute("SELECT uuid_sha256 FROM credentials")}
    live = [
        (kind, entity_id, data) for kind, entity_id, _, terminal, data in entities if not terminal
    ]

    containers = {entity_id for kind, entity_id, _ in live if kind == "container"}
    assert containers == survivors, "live containers in the journal"
    domains = set(qemu.list_marked()) - baseline
    assert domains == survivors, "marked domains"
    assert all(qemu.is_active(uuid) for uuid in survivors)

    forwarders = {
        entity_id.split(".")[0]: data for kind, entity_id, data in live if kind == "forwarder"
    }
    assert set(forwarders) == survivors, "live forwarders"
    ports = {json.loads(data)["port"] for data in forwarders.values()}
    # The restarted server's own ports only: other listeners of the test run sit in the
    # kernel's ephemeral range, which holds PORTS (the session's PostgreSQL server took
    # one of them once). The server listens on a port the kernel picked (--port 0) from
    # that range too: that one is not a forwarder's.
    listening = listening_ports(*PORTS, pid=server.process.pid) - {server.port}
    assert listening == ports, "listening forwarder ports"

    assert credentials == {sha256(uuid) for uuid in survivors}, "stored credentials"
    left_over = [
        (kind, entity_id) for kind, entity_id, _ in live if kind in ("session", "endpoint_shell")
    ]
    assert left_over == [], "sessions and shells of the killed run"
    wrong = {
        entity_id: (state, last_dest.get(entity_id))
        for _, entity_id, state, _, _ in entities
        if last_dest.get(entity_id) != state
    }
    assert wrong == {}, "entity states that are not their last transition's destination"


def new_create_works(server: ServeProcess) -> None:
    created = server.client().create()
    assert created["success"] is True, created
    data = created["data"]
    port, user = data["container_listen_port"], data["container_username"]
    assert ssh_run(port, user, data["container_password"], "id -un") == user
    destroyed = server.client().destroy(data["container_uuid"], data["client_token"])
    assert destroyed["success"] is True, destroyed


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("step", CREATE_STEPS + DESTROY_STEPS)
def test_sigkill_at_step(tmp_path, images, qemu, key_folder, step, mode):
    expected = expected_outcome(step, mode)
    CRASH_TABLE[(step, mode)] = "FAILED"
    shutil.copytree(key_folder, tmp_path / "rsa")
    config = write_config(tmp_path, images["dev"], mode, ports=PORTS)
    baseline = set(qemu.list_marked())
    first = ServeProcess(config, env={"ANWEDDOL_ACTORS_TEST_PAUSE_AT": step})
    second = None
    data = None
    try:
        if step.startswith("create:"):
            call = Background(lambda: first.client().create())
        else:
            created = first.client().create()
            assert created["success"] is True, created
            data = created["data"]
            uuid, token = data["container_uuid"], data["client_token"]
            call = Background(lambda: first.client().destroy(uuid, token))
        first.wait_for_line(rf"paused at {step} ", timeout=240)
        if step == "create:response_sent":
            call.join()  # the response is delivered: the client holds its container
            assert call.result["success"] is True, call.result
            data = call.result["data"]
        first.kill()
        call.join()

        second = ServeProcess(config)
        survivors = {data["container_uuid"]} if expected == "adopted" else set()
        check_after_restart(tmp_path / "journal.sqlite3", qemu, baseline, survivors, second)

        if data is not None:
            uuid, token = data["container_uuid"], data["client_token"]
            port, user = data["container_listen_port"], data["container_username"]
            password = data["container_password"]
            if expected == "adopted":
                assert ssh_run(port, user, password, "id -un") == user
                assert second.client().destroy(uuid, token)["success"] is True
            else:
                assert refuses(port) or login_fails(port, user, password)
                denied = second.client().destroy(uuid, token)
                assert denied["message"] == "Bad authentication", denied
        new_create_works(second)
        assert second.stop() == 0
        assert set(qemu.list_marked()) - baseline == set()
        CRASH_TABLE[(step, mode)] = expected
    finally:
        first.stop()
        if second is not None:
            second.stop()
        for uuid in set(qemu.list_marked()) - baseline:
            qemu.destroy_domain(uuid)  # only on failure: the checks above found none
