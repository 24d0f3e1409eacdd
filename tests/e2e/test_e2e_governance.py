"""Governance end to end, with real VMs: a CREATE is complete only once delivered, the
reaper enforces lifetimes, a stop unwinds a CREATE in flight, every event stands on a
journalled transition, and an entity actor that fails ends its whole container."""

from __future__ import annotations

import functools
import socket
import threading
import time
from datetime import datetime

import paramiko
import pykka
import pytest
from probes import refuses
from serverharness import RunningServer, record_events, wait_for
from test_e2e_containers import assert_nothing_left

from anweddol_actors.actors.container import ContainerActor
from anweddol_actors.actors.endpoint_shell import EndpointShellActor
from anweddol_actors.actors.forwarder import ForwarderActor
from anweddol_actors.client import Client
from anweddol_actors.client.blocking import ClientError
from anweddol_actors.core import server as seed
from anweddol_actors.engine import create as create_flow
from anweddol_actors.engine import verbs
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle.events import ALL_EVENTS, EVENT_RUNTIME_ERROR, backs
from anweddol_actors.protocol import NEED_DATA, ClientConnection, MessageSent, crypto
from anweddol_actors.protocol.messages import REQUEST_VERB_CREATE, make_request

pytestmark = pytest.mark.vm


@functools.cache
def _client_key():
    # One 2048-bit key for every client here: a 4096-bit one per request costs seconds.
    return crypto.generate_private_key(2048)


def client_for(running) -> Client:
    return Client(*running.address, timeout=240, private_key=_client_key())


def ours(running, qemu) -> list[str]:
    return qemu.list_marked(owner=running.engine.context.owner)


def triggers(rows) -> list[str]:
    return [row["trigger"] for row in rows]


def reason_of(row) -> str:
    return str((row["details"] or {}).get("reason", ""))


def seconds_between(earlier, later) -> float:
    return (
        datetime.fromisoformat(later["time"]) - datetime.fromisoformat(earlier["time"])
    ).total_seconds()


def last_row(rows, trigger: str):
    matching = [row for row in rows if row["trigger"] == trigger]
    assert matching, f"no {trigger} in {triggers(rows)}"
    return matching[-1]


def wait_destroyed(journal, entity_id: str, timeout: float = 20) -> None:
    """Gone from libvirt is not yet ended: ``destroy`` is journalled right after."""

    def state():
        row = journal.entity(entity_id)
        return None if row is None else row["state"]

    wait_for(lambda: state() == "destroyed", timeout, f"{entity_id} destroyed ({state()})")


def capture_tokens(monkeypatch) -> list[str]:
    """The client tokens CREATEs generate (the journal keeps only their hashes)."""
    tokens: list[str] = []

    def generate() -> str:
        token = verbs.new_client_token()
        tokens.append(token)
        return token

    monkeypatch.setattr(create_flow, "new_client_token", generate)
    return tokens


def record_with_ports(server) -> tuple[list, list[int]]:
    """record_events, plus the forwarders' ports read while their actors are alive."""
    seen = record_events(server)
    ports: list[int] = []

    @server.on_forwarder_started
    def started(context, data):
        ports.append(data["forwarder_instance"].getServerOriginPort())
        seen.append(("on_forwarder_started", context, data))

    return seen, ports


def create_then_hang_up(running) -> None:
    """A CREATE sent by hand, the socket closed as soon as the request body is out: the
    server's response length frame can never be acknowledged."""
    conn = ClientConnection(_client_key())
    conn.send_request(make_request(REQUEST_VERB_CREATE, {}))
    sock = socket.create_connection(running.address, timeout=30)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            event = conn.next_event()
            if isinstance(event, MessageSent):  # the request length frame was acked
                sock.sendall(conn.data_to_send())  # the request body
                return
            if event is NEED_DATA:
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
                data = sock.recv(65536)
                assert data, f"server closed the connection in state {conn.state}"
                conn.receive_data(data)
    finally:
        sock.close()


# -- 1. a client that gives up before its CREATE response ------------------------------


def test_create_response_not_delivered_unwinds(make_vm_server, qemu, monkeypatch):
    tokens = capture_tokens(monkeypatch)
    running = make_vm_server(max_containers=1)
    seen, ports = record_with_ports(running.server)
    engine = running.engine
    journal = engine.journal

    create_then_hang_up(running)
    # The CREATE runs to the end (its steps cannot tell the peer left), then the response
    # is not delivered and everything is undone.
    wait_for(lambda: len(tokens) == 1, 120, "the CREATE reached its credentials")
    wait_for(lambda: not ours(running, qemu), 60, "the domain destroyed")
    (container,) = {row["entity_id"] for row in journal.history(kind="container")}
    wait_destroyed(journal, container)
    wait_destroyed(journal, f"{container}.forwarder")
    wait_for(
        lambda: (
            (
                engine.registry.count().get(),
                engine.registry.pending_count().get(),
                engine.registry.available().get(),
            )
            == (0, 0, 1)
        ),
        10,
        "the slot given back",
    )
    rows = journal.history(entity_id=container)
    assert triggers(rows) == ["create", "start", "administer", "fail", "destroy"]
    assert "response not delivered" in reason_of(rows[-2]), rows[-2]
    forwarder_rows = journal.history(entity_id=f"{container}.forwarder")
    assert triggers(forwarder_rows)[-2:] == ["fail", "destroy"]
    assert "response not delivered" in reason_of(forwarder_rows[-2])
    assert len(ports) == 1 and refuses(ports[0])
    assert not journal.verify_credentials(container, tokens[0])
    stops = [
        (n, c) for n, c, _ in seen if n in ("on_forwarder_stopped", "on_container_domain_stopped")
    ]
    assert stops == [
        ("on_forwarder_stopped", seed.CONTEXT_ERROR),
        ("on_container_domain_stopped", seed.CONTEXT_ERROR),
    ]
    wait_for(lambda: "on_client_closed" in [n for n, _, _ in seen], 10, "session end")
    assert [n for n, _, _ in seen].count(EVENT_RUNTIME_ERROR) == 1
    assert_nothing_left(running, qemu, container)

    # The one slot was given back: a well-behaved client gets a container.
    created = client_for(running).create()
    assert created["success"] is True, created
    data = created["data"]
    assert data["container_uuid"] != container
    assert ours(running, qemu) == [data["container_uuid"]]
    destroyed = client_for(running).destroy(data["container_uuid"], data["client_token"])
    assert destroyed["success"] is True, destroyed
    assert_nothing_left(running, qemu, data["container_uuid"])
    assert engine.registry.available().get() == 1


# -- 2. lifetimes ------------------------------------------------------------------------


def test_max_idle_time_ends_an_unused_container(make_vm_server, qemu):
    running = make_vm_server(max_idle_time=3, reaper_poll_interval=0.5)
    seen = record_events(running.server)
    created = client_for(running).create()
    assert created["success"] is True, created
    data = created["data"]
    uuid = data["container_uuid"]
    assert data["container_max_idle_time"] == 3
    assert data["container_max_lifetime"] is None

    wait_for(lambda: uuid not in ours(running, qemu), 20, "the idle container destroyed")
    wait_for(lambda: running.engine.registry.count().get() == 0, 10, "registry emptied")
    journal = running.engine.journal
    wait_destroyed(journal, uuid)
    rows = journal.history(entity_id=uuid)
    assert triggers(rows)[-2:] == ["stop", "destroy"]
    assert "max_idle_time" in reason_of(rows[-2]), rows[-2]
    # Idle from the relay's start, not ended before its time.
    started = last_row(journal.history(entity_id=f"{uuid}.forwarder"), "start")
    idle_for = seconds_between(started, rows[-2])
    assert 2.9 <= idle_for <= 3 + 5, idle_for

    wait_for(lambda: "on_container_domain_stopped" in [n for n, _, _ in seen], 10, "stop event")
    stopped = [(c, d) for n, c, d in seen if n == "on_container_domain_stopped"]
    assert len(stopped) == 1
    context, event_data = stopped[0]
    assert context == seed.CONTEXT_AUTOMATIC_ACTION
    assert event_data["container_instance"].getUUID() == uuid
    assert refuses(data["container_listen_port"])
    again = client_for(running).destroy(uuid, data["client_token"])
    assert again["success"] is False and again["message"] == "Bad authentication"
    assert_nothing_left(running, qemu, uuid)


def test_max_lifetime_ends_a_container_in_use(make_vm_server, qemu):
    running = make_vm_server(max_lifetime=4, max_idle_time=None, reaper_poll_interval=0.5)
    created = client_for(running).create()
    assert created["success"] is True, created
    data = created["data"]
    uuid = data["container_uuid"]
    assert data["container_max_lifetime"] == 4
    assert data["container_max_idle_time"] is None

    ssh = paramiko.SSHClient()
    ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        ssh.connect(
            "127.0.0.1",
            port=data["container_listen_port"],
            username=data["container_username"],
            password=data["container_password"],
            allow_agent=False,
            look_for_keys=False,
            timeout=30,
            banner_timeout=30,
            auth_timeout=30,
        )
        _, stdout, _ = ssh.exec_command("echo alive", timeout=30)
        assert stdout.read().decode().strip() == "alive"
        transport = ssh.get_transport()
        # The session is open through the forwarder: the container is not idle, and is
        # ended all the same once its lifetime is over.
        (entry,) = running.engine.registry.live().get()
        assert entry.forwarder.idle_seconds().get() == 0.0
        wait_for(lambda: uuid not in ours(running, qemu), 15, "the container destroyed")
        wait_for(lambda: not transport.is_active(), 15, "the SSH session cut")
    finally:
        ssh.close()

    journal = running.engine.journal
    wait_destroyed(journal, uuid)
    rows = journal.history(entity_id=uuid)
    assert triggers(rows)[-2:] == ["stop", "destroy"]
    assert "max_lifetime" in reason_of(rows[-2]), rows[-2]
    lived = seconds_between(last_row(rows, "serve"), rows[-2])
    assert 3.9 <= lived <= 4 + 5, lived
    assert refuses(data["container_listen_port"])
    assert not journal.verify_credentials(uuid, data["client_token"])
    assert_nothing_left(running, qemu, uuid)


# -- 3. a stop while a CREATE is in flight --------------------------------------------


def test_stop_during_create_unwinds_it(make_vm_server, qemu):
    running = make_vm_server()
    journal = running.engine.journal
    outcome: list = []

    def create() -> None:
        try:
            outcome.append(client_for(running).create())
        except ClientError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=create, daemon=True)
    thread.start()
    wait_for(
        lambda: "start" in triggers(journal.history(kind="container")),
        120,
        "the CREATE's domain started",
    )
    (uuid,) = {row["entity_id"] for row in journal.history(kind="container")}

    began = time.monotonic()
    running.stop()  # stopServer, then close (the journal too)
    took = time.monotonic() - began
    assert took < 60, took
    thread.join(timeout=60)
    assert not thread.is_alive(), "the CREATE's client still waits"
    (result,) = outcome
    if isinstance(result, dict):
        assert result["success"] is False, result
    else:
        assert isinstance(result, ClientError), result

    assert ours(running, qemu) == []
    assert uuid not in qemu.list_marked()
    with Journal(running.engine.settings.database) as after:
        assert after.live_entities() == []
        rows = after.history(entity_id=uuid)
        assert triggers(rows)[-1] == "destroy", triggers(rows)
        assert "fail" in triggers(rows) or "stop" in triggers(rows)
    for actor_class in (ContainerActor, EndpointShellActor, ForwarderActor):
        wait_for(
            lambda cls=actor_class: not pykka.ActorRegistry.get_by_class(cls),
            10,
            f"every {actor_class.__name__} stopped",
        )


# -- 4. every event stands on a journalled transition ------------------------------


SERVER_EVENTS = {"on_server_started", "on_server_stopped"}
SESSION_EVENTS = {
    "on_connection_accepted",
    "on_client_initialized",
    "on_request",
    "on_malformed_request",
    "on_unhandled_verb",
    "on_authentication_error",
    "on_client_closed",
}


def install_backing_checks(server, checks: list) -> None:
    """On all 19 events, a handler that checks, as it runs, that a row already in the
    journal backs the event for the entity concerned. Records (event, backed, what)."""
    journal = server.engine.journal
    lock = threading.Lock()
    container_of_channel: dict[int, str] = {}  # a shell event's container: its session's

    def entity_prefix(event: str, data: dict) -> str | None:
        if event.startswith("on_container"):
            uuid = data["container_instance"].getUUID()
            container_of_channel[id(data["client_instance"].channel)] = uuid
            return uuid
        if event.startswith("on_forwarder"):
            return data["forwarder_instance"].getContainerUUID()
        if event.startswith("on_endpoint_shell"):
            uuid = container_of_channel.get(id(data["client_instance"].channel))
            return None if uuid is None else f"{uuid}.shell"
        return None

    def check(event: str, data: dict) -> tuple[bool, str]:
        rows = journal.history()
        if event in SERVER_EVENTS:
            candidates = [row for row in rows if row["kind"] == "server"]
        elif event in SESSION_EVENTS:
            # Before its first valid request a session's rows are recorded in its lifecycle
            # and written later in one transaction (docs/architecture.md, "The journal").
            held = [row for s in list(server.engine._sessions) for row in s.lifecycle.held_rows]
            candidates = [row for row in rows + held if row["kind"] == "session"]
        elif event == EVENT_RUNTIME_ERROR:
            candidates = rows
        else:
            prefix = entity_prefix(event, data)
            if prefix is None:
                return False, "no entity for the event"
            candidates = [row for row in rows if row["entity_id"].startswith(prefix)]
        backing = [r for r in candidates if backs((r["kind"], r["trigger"]), event)]
        what = [(r["kind"], r["entity_id"][:13], r["trigger"]) for r in candidates[-6:]]
        return bool(backing), str(what)

    for event in ALL_EVENTS:

        def handler(context, data, _event=event):
            try:
                backed, what = check(_event, data)
            except Exception as exc:  # a handler must not break the flow it watches
                backed, what = False, f"check raised {exc!r}"
            with lock:
                checks.append((_event, backed, what))

        getattr(server, event)(handler)


def test_every_event_finds_its_transition(make_vm_server, qemu, monkeypatch):
    checks: list[tuple[str, bool, str]] = []
    start = RunningServer.start

    def start_checked(self):
        # Installed before the server starts, so that on_server_started is checked too.
        install_backing_checks(self.server, checks)
        return start(self)

    monkeypatch.setattr(RunningServer, "start", start_checked)
    running = make_vm_server()

    def names() -> list[str]:
        return [event for event, _, _ in checks]

    wait_for(lambda: "on_server_started" in names(), 10, "on_server_started")

    client = client_for(running)
    created = client.create()
    assert created["success"] is True, created
    data = created["data"]
    wrong = client.destroy(data["container_uuid"], "A" * 255)
    assert wrong["success"] is False and wrong["message"] == "Bad authentication"
    destroyed = client.destroy(data["container_uuid"], data["client_token"])
    assert destroyed["success"] is True, destroyed
    malformed = client.request("not a verb")
    assert malformed["success"] is False and malformed["message"].startswith("Bad request")
    unhandled = client.request("NOSUCHVERB")
    assert unhandled == {
        "success": False,
        "message": "Bad request (Unhandled verb)",
        "data": {},
    }
    wait_for(lambda: names().count("on_client_closed") == 5, 10, "five sessions closed")
    assert data["container_uuid"] not in ours(running, qemu)
    running.stop()

    unbacked = [(event, what) for event, backed, what in checks if not backed]
    assert unbacked == [], unbacked
    seen = set(names())
    assert seen >= set(ALL_EVENTS) - {EVENT_RUNTIME_ERROR}, set(ALL_EVENTS) - seen
    assert EVENT_RUNTIME_ERROR not in seen


# -- 5. an exception inside a live container's forwarder actor --------------------------


def test_forwarder_failure_ends_its_container(make_vm_server, qemu):
    running = make_vm_server()
    engine = running.engine
    created = client_for(running).create()
    assert created["success"] is True, created
    data = created["data"]
    uuid = data["container_uuid"]
    seen = record_events(running.server)

    (entry,) = engine.registry.live().get()
    assert entry.uuid == uuid
    injected = RuntimeError("injected")
    failed = entry.forwarder.fail(injected).get()
    assert (failed.kind, failed.trigger) == ("forwarder", "fail")

    wait_for(lambda: uuid not in ours(running, qemu), 20, "the container destroyed")
    wait_for(
        lambda: engine.registry.count().get() == 0 and not engine.registry.stuck().get(),
        20,
        "the registry emptied",
    )
    assert not engine.journal.verify_credentials(uuid, data["client_token"])
    assert refuses(data["container_listen_port"])
    journal = engine.journal
    wait_destroyed(journal, uuid)
    forwarder_rows = journal.history(entity_id=f"{uuid}.forwarder")
    assert triggers(forwarder_rows)[-2:] == ["fail", "destroy"]
    assert "injected" in reason_of(forwarder_rows[-2])
    rows = journal.history(entity_id=uuid)
    assert triggers(rows)[-2:] == ["stop", "destroy"]
    assert "forwarder failed" in reason_of(rows[-2]), rows[-2]
    wait_for(lambda: "on_container_domain_stopped" in [n for n, _, _ in seen], 10, "the stop event")
    time.sleep(1)  # room for a second report, which must not come
    errors = [(c, d) for n, c, d in seen if n == EVENT_RUNTIME_ERROR]
    assert len(errors) == 1, errors
    assert errors[0][1]["exception_object"] is injected
    stopped = [c for n, c, _ in seen if n == "on_container_domain_stopped"]
    assert stopped == [seed.CONTEXT_AUTOMATIC_ACTION]

    # The server keeps serving.
    stat = client_for(running).stat()
    assert stat["success"] is True and stat["data"]["available"] == 6
    bad = client_for(running).destroy(uuid, data["client_token"])
    assert bad["message"] == "Bad authentication"
    assert_nothing_left(running, qemu, uuid)
