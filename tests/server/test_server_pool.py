"""The warm pool on libvirt's test driver, with a real SSH server on loopback standing in
for the guest (``LoopbackSSH``: its port is the only one of the guest port range, so the
test driver's domain "forwards" to it): fills, handovers and their events, capacity and
STAT, refills, failed fills, stops and restarts, with a real server, client and SQLite
journal. The pool with real QEMU guests is in tests/e2e/test_e2e_pool.py."""

from __future__ import annotations

import socket
import sqlite3
import threading

import pytest
from serverharness import CREATE_EVENTS, record_events, stand_in_server, wait_for

from anweddol_actors.cli.service import status_text
from anweddol_actors.client import Client
from anweddol_actors.engine.admin import status
from anweddol_actors.lifecycle.events import CONTEXT_AUTOMATIC_ACTION, CONTEXT_NORMAL_PROCESS

# The CREATE's events after on_container_created, in the seed's order.
HANDOVER_EVENTS = CREATE_EVENTS[1:]


def free_range(size: int = 20) -> tuple[int, int]:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        base = probe.getsockname()[1]
    return (base, min(65535, base + size))


@pytest.fixture
def make(rsa, tmp_path, guest):
    """Factory: a server (not started) with a warm pool whose guests answer SSH."""
    made = []

    def factory(**overrides):
        settings = {
            "warm_pool_size": 1,
            "guest_port_range": (guest.port, guest.port),
            "ready_timeout": 10.0,
            "database": str(tmp_path / "journal.sqlite"),
            **overrides,
        }
        running = stand_in_server(rsa, tmp_path, free_range(), **settings)
        made.append(running)
        return running

    yield factory
    for running in made:
        if running.thread.is_alive():
            running.stop()


def pool_status(running) -> dict:
    return status(running.engine.context, running.engine.listen_address)["warm_pool"]


def wait_ready(running, ready: int = 1) -> None:
    wait_for(lambda: pool_status(running)["ready"] == ready, 30, f"{ready} pooled ready")


def container_triggers(running, container_uuid: str) -> list[str]:
    return [row["trigger"] for row in running.engine.journal.history(container_uuid)]


def entity_events(seen) -> list[tuple[str, int]]:
    prefixes = ("on_container", "on_endpoint", "on_forwarder")
    return [(name, context) for name, context, _ in seen if name.startswith(prefixes)]


def stop_and_check(running, then=None) -> None:
    """Stop the server, check that it left nothing (and ``then()``, read before its
    journal closes), close it."""
    running.server.stopServer()
    running.thread.join(120)
    assert not running.thread.is_alive()
    try:
        assert_nothing_left(running)
        if then is not None:
            then()
    finally:
        running.server.close()


def assert_nothing_left(running) -> None:
    engine = running.engine
    assert engine.context.hypervisors.get().list_marked(owner=engine.owner) == []
    live = [row for row in engine.journal.live_entities() if row["kind"] != "server"]
    assert live == []
    assert engine.registry.pooled_count().get() == 0
    assert engine.registry.pending_count().get() == 0


def test_a_create_takes_the_pooled_container_with_the_seeds_events(make, guest):
    running = make(max_containers=3)
    seen = record_events(running.server)
    running.start()
    wait_ready(running)
    # Made ahead of demand: only on_container_created fired, automatically.
    assert entity_events(seen) == [("on_container_created", CONTEXT_AUTOMATIC_ACTION)]
    [row] = running.engine.journal.live_entities(kind="container")
    pooled_uuid = row["entity_id"]
    assert row["state"] == "started_pooled"
    forwarder = running.engine.journal.entity(f"{pooled_uuid}.forwarder", kind="forwarder")
    assert forwarder["state"] == "created"  # port reserved, not relaying
    # The ready one is there for a CREATE, and holds one of the 3 slots.
    assert Client(*running.address, timeout=20).stat()["data"]["available"] == 3
    assert running.engine.registry.available().get() == 2
    seen.clear()
    client = Client(*running.address, timeout=20)
    first = client.create()
    assert first["success"], first
    assert first["data"]["container_uuid"] == pooled_uuid
    # The rest of the CREATE's events, in the seed's order, with the client, at handover
    # (the refill's on_container_created may come between: it is the next container's).
    handed = [entry for entry in entity_events(seen) if entry[0] != "on_container_created"]
    assert handed == [(name, CONTEXT_NORMAL_PROCESS) for name in HANDOVER_EVENTS]
    handover_data = [data for name, _, data in seen if name in HANDOVER_EVENTS]
    assert all(data["client_instance"] is not None for data in handover_data)
    # ``serve`` is journalled once the response is delivered (just after the client has it).
    wait_for(lambda: container_triggers(running, pooled_uuid)[-1] == "serve", 10, "serve")
    assert container_triggers(running, pooled_uuid) == [
        "create",
        "start",
        "administer",
        "pool",
        "serve",
    ]
    listed = running.engine.context.registry.live().get()
    assert [entry.uuid for entry in listed] == [pooled_uuid]
    # Refilled in the background; the second CREATE is warm too, with fresh credentials.
    wait_ready(running)
    second = client.create()
    assert second["success"], second
    assert second["data"]["container_uuid"] != pooled_uuid
    assert second["data"]["container_password"] != first["data"]["container_password"]
    assert second["data"]["container_listen_port"] != first["data"]["container_listen_port"]
    for response in (first, second):
        data = response["data"]
        done = client.destroy(data["container_uuid"], data["client_token"])
        assert done["success"], done
    stop_and_check(running)


def test_two_concurrent_creates_never_share_the_pooled_container(make):
    running = make(max_containers=3).start()
    wait_ready(running)
    answers: list[dict] = []

    def create() -> None:
        answers.append(Client(*running.address, timeout=30).create())

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [answer["success"] for answer in answers] == [True, True], answers
    uuids = {answer["data"]["container_uuid"] for answer in answers}
    assert len(uuids) == 2
    assert sorted(running.engine.registry.uuids().get()) == sorted(uuids)
    stop_and_check(running)


def test_the_pool_counts_against_capacity_and_refills_when_a_slot_frees(make):
    running = make(max_containers=1).start()
    wait_ready(running)
    client = Client(*running.address, timeout=30)
    assert client.stat()["data"]["available"] == 1
    # The pool's container holds the one slot: no cold CREATE could start.
    assert running.engine.registry.reserve_slot().get() is False
    created = client.create()
    assert created["success"], created
    assert client.stat()["data"]["available"] == 0
    # Full: the pool does not fill beyond capacity.
    assert pool_status(running) == {"size": 1, "ready": 0, "filling": 0}
    refused = client.create()
    assert refused["message"].startswith("Unavailable"), refused
    data = created["data"]
    assert client.destroy(data["container_uuid"], data["client_token"])["success"]
    wait_ready(running)
    assert client.stat()["data"]["available"] == 1
    stop_and_check(running)


def test_a_create_on_a_full_server_waits_for_the_filling_container(make):
    running = make(max_containers=1)
    gate = threading.Event()

    @running.server.on_container_created
    def hold(context, data):
        # The fill waits here until the client's CREATE has begun.
        gate.wait(10)

    @running.server.on_request
    def release(context, data):
        gate.set()

    running.start()
    wait_for(lambda: pool_status(running)["filling"] == 1, 10, "a fill in flight")
    created = Client(*running.address, timeout=30).create()
    assert created["success"], created
    assert running.engine.registry.count().get() == 1
    stop_and_check(running)


def test_a_failed_fill_is_unwound_journalled_and_retried_with_a_backoff(make, guest):
    # Nothing answers SSH on the guest's port: every fill times out.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        running = make(guest_port_range=(port, port), ready_timeout=0.5)
        seen = record_events(running.server)
        running.start()
        journal = running.engine.journal

        def failed_fills() -> list[str]:
            return [
                row["entity_id"]
                for row in journal.history(kind="container")
                if row["trigger"] == "destroy"
            ]

        wait_for(lambda: len(failed_fills()) >= 2, 30, "two failed fills")
        for container_uuid in failed_fills()[:2]:
            assert container_triggers(running, container_uuid) == [
                "create",
                "start",
                "fail",
                "destroy",
            ]
            [fail] = [row for row in journal.history(container_uuid) if row["trigger"] == "fail"]
            assert "warm pool fill failed" in str(fail["details"])
        assert pool_status(running)["ready"] == 0
        assert "on_runtime_error" in [name for name, _, _ in seen]
        # A CREATE meanwhile goes cold (and fails the same way), never hangs.
        answer = Client(*running.address, timeout=30).create()
        assert answer["message"] == "Internal error"
        stop_and_check(running)


def test_a_stop_ends_a_fill_in_flight(make):
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        # The guest never answers within the test: the fill stays in its boot wait.
        running = make(guest_port_range=(port, port), ready_timeout=300.0).start()
        wait_for(lambda: pool_status(running)["filling"] == 1, 10, "a fill in flight")
        wait_for(
            lambda: running.engine.journal.live_entities(kind="container") != [],
            10,
            "the filling container journalled",
        )
        [row] = running.engine.journal.live_entities(kind="container")

        def unwound() -> None:
            triggers = container_triggers(running, row["entity_id"])
            assert triggers[-2:] == ["fail", "destroy"]

        stop_and_check(running, unwound)


def test_a_stop_ends_the_ready_pooled_containers(make):
    running = make().start()
    wait_ready(running)
    [row] = running.engine.journal.live_entities(kind="container")

    def ended() -> None:
        assert container_triggers(running, row["entity_id"]) == [
            "create",
            "start",
            "administer",
            "pool",
            "stop",
            "destroy",
        ]

    stop_and_check(running, ended)


def test_a_restart_destroys_a_pooled_container_of_the_earlier_run(make, rsa, tmp_path, guest):
    running = make().start()
    wait_ready(running)
    [row] = running.engine.journal.live_entities(kind="container")
    pooled_uuid = row["entity_id"]
    # The journal as a crash at this moment leaves it: copied while the container waits.
    crashed = tmp_path / "crashed.sqlite"
    with sqlite3.connect(running.engine.journal.path) as source, sqlite3.connect(crashed) as copy:
        source.backup(copy)
    running.stop()
    restarted = stand_in_server(
        rsa, tmp_path, free_range(), database=str(crashed), warm_pool_size=0
    ).start()
    try:
        journal = restarted.engine.journal
        assert [row for row in journal.live_entities() if row["kind"] != "server"] == []
        # Never serving: destroyed at start, journalled, with its shell and forwarder.
        rows = journal.history(pooled_uuid)
        assert [row["trigger"] for row in rows][-3:] == ["pool", "fail", "destroy"]
        assert "reconciled at server start" in str(rows[-1]["details"])
        forwarder = journal.entity(f"{pooled_uuid}.forwarder", kind="forwarder")
        assert forwarder["state"] == "destroyed"
    finally:
        restarted.stop()


def test_handlers_size_a_pooled_container_before_it_boots_and_use_its_shell_at_handover(
    make,
):
    running = make(max_containers=2)
    shell_answers: list[object] = []

    @running.server.on_container_created
    def size_it(context, data):
        data["container_instance"].setMemory(192)

    @running.server.on_endpoint_shell_closed
    def ask_shell(context, data):
        # The pooled shell's actor lives until its events have fired at handover.
        shell_answers.append(data["endpoint_shell_instance"].getStoredClientSSHCredentials())

    running.start()
    wait_ready(running)
    [row] = running.engine.journal.live_entities(kind="container")
    created = Client(*running.address, timeout=30).create()
    assert created["success"], created
    assert row["data"]["memory_mib"] == 192  # journalled at start, as the domain was made
    data = created["data"]
    assert shell_answers == [(data["container_username"], data["container_password"])]
    stop_and_check(running)


def test_status_shows_the_pool(make):
    running = make(max_containers=2).start()
    wait_ready(running)
    shown = status(running.engine.context, running.engine.listen_address)
    assert shown["warm_pool"] == {"size": 1, "ready": 1, "filling": 0}
    assert shown["available"] == 2
    assert shown["containers"] == 0  # a pooled container is nobody's
    text = status_text(
        {
            "pid": 1,
            "uptime": 1,
            "containers": 0,
            "available": 2,
            "warm_pool": shown["warm_pool"],
            "fingerprint": "x",
            "listen": "127.0.0.1:1",
            "config": "c",
            "admin_error": None,
        }
    )
    assert "  warm pool:        1 of 1 ready, 0 filling" in text.splitlines()
    stop_and_check(running)
