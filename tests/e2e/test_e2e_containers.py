"""CREATE and DESTROY end to end, with real VMs: the client's SSH login, the reaper,
parallel CREATEs, handler-set resources, and injected failures that must unwind fully."""

from __future__ import annotations

import socket
import threading

import pykka
import pytest
from probes import login_fails, refuses, ssh_run
from serverharness import CREATE_EVENTS, record_events, wait_for

from anweddol_actors.actors.container import ContainerActor
from anweddol_actors.actors.endpoint_shell import EndpointShellActor
from anweddol_actors.actors.forwarder import ForwarderActor
from anweddol_actors.client import Client
from anweddol_actors.core import server as seed

pytestmark = pytest.mark.vm


def client_for(running) -> Client:
    return Client(*running.address, timeout=240)


def event_names(seen, prefixes=("on_container", "on_endpoint", "on_forwarder")) -> list[str]:
    return [name for name, _, _ in seen if name.startswith(prefixes)]


def assert_nothing_left(running, qemu, container_uuid: str | None = None) -> None:
    journal = running.engine.journal

    def live():
        return [row for row in journal.live_entities() if row["kind"] != "server"]

    # The last session may still be closing after its response reached the client.
    wait_for(lambda: not live(), 10, f"every entity destroyed ({live()})")
    if container_uuid is not None:
        assert container_uuid not in qemu.list_marked()
    assert running.engine.registry.count().get() == 0
    assert running.engine.registry.pending_count().get() == 0
    # No entity actor (and so no actor thread) outlives its container.
    for actor_class in (ContainerActor, EndpointShellActor, ForwarderActor):
        wait_for(
            lambda cls=actor_class: not pykka.ActorRegistry.get_by_class(cls),
            10,
            f"every {actor_class.__name__} stopped",
        )


def test_create_login_destroy(make_vm_server, qemu):
    running = make_vm_server()
    seen = record_events(running.server)
    created = client_for(running).create()
    assert created["success"] is True, created
    data = created["data"]
    assert event_names(seen) == CREATE_EVENTS
    contexts = {context for name, context, _ in seen if name in CREATE_EVENTS}
    assert contexts == {seed.CONTEXT_NORMAL_PROCESS}
    # The seed's data keys, and the objects behind them answer for this container.
    keys = {name: set(event_data) for name, _, event_data in seen if name in CREATE_EVENTS}
    assert keys == {
        "on_container_created": {"client_instance", "container_instance"},
        "on_container_domain_started": {"client_instance", "container_instance"},
        "on_endpoint_shell_created": {"client_instance", "endpoint_shell_instance"},
        "on_endpoint_shell_opened": {"client_instance", "endpoint_shell_instance"},
        "on_endpoint_shell_closed": {"client_instance", "endpoint_shell_instance"},
        "on_forwarder_created": {"client_instance", "forwarder_instance"},
        "on_forwarder_started": {"client_instance", "forwarder_instance"},
    }
    by_name = {name: event_data for name, _, event_data in seen}
    assert (
        by_name["on_container_created"]["container_instance"].getUUID() == (data["container_uuid"])
    )
    forwarder = by_name["on_forwarder_started"]["forwarder_instance"]
    assert forwarder.getServerOriginPort() == data["container_listen_port"]
    assert forwarder.getContainerUUID() == data["container_uuid"]
    assert data["container_uuid"] in qemu.list_marked()
    assert len(data["container_password"]) == 100

    port = data["container_listen_port"]
    whoami = ssh_run(port, data["container_username"], data["container_password"], "id -un")
    assert whoami == data["container_username"]
    assert login_fails(port, "endpoint", "endpoint")  # the setup script locked it

    journal = running.engine.journal
    container_rows = journal.history(entity_id=data["container_uuid"])
    assert [r["trigger"] for r in container_rows] == ["create", "start", "administer", "serve"]

    seen.clear()
    destroyed = client_for(running).destroy(data["container_uuid"], data["client_token"])
    assert destroyed["success"] is True and destroyed["message"] == "OK"
    assert event_names(seen) == ["on_forwarder_stopped", "on_container_domain_stopped"]
    assert data["container_uuid"] not in qemu.list_marked()
    assert refuses(port)
    assert not journal.verify_credentials(data["container_uuid"], data["client_token"])
    again = client_for(running).destroy(data["container_uuid"], data["client_token"])
    assert again["message"] == "Bad authentication"
    assert_nothing_left(running, qemu, data["container_uuid"])


def test_handler_sets_memory_and_vcpus(make_vm_server, qemu):
    running = make_vm_server()

    @running.server.on_container_created
    def bigger(context, data):
        data["container_instance"].setMemory(320)
        data["container_instance"].setVCPUs(2)

    created = client_for(running).create()
    assert created["success"] is True, created
    info = qemu.domain_info(created["data"]["container_uuid"])
    assert (info.memory_mib, info.vcpus) == (320, 2)
    assert client_for(running).destroy(
        created["data"]["container_uuid"], created["data"]["client_token"]
    )["success"]


def test_two_creates_in_parallel(make_vm_server, qemu):
    running = make_vm_server()
    results: list[dict] = []

    def create() -> None:
        results.append(client_for(running).create())

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(results) == 2 and all(r["success"] for r in results), results
    ports = {r["data"]["container_listen_port"] for r in results}
    assert len(ports) == 2
    for result in results:
        data = result["data"]
        who = ssh_run(
            data["container_listen_port"],
            data["container_username"],
            data["container_password"],
            "id -un",
        )
        assert who == data["container_username"]
    for result in results:
        data = result["data"]
        assert client_for(running).destroy(data["container_uuid"], data["client_token"])["success"]
    assert_nothing_left(running, qemu)


def test_guest_poweroff_is_reaped(make_vm_server, qemu):
    running = make_vm_server()
    seen = record_events(running.server)
    created = client_for(running).create()
    assert created["success"] is True, created
    data = created["data"]
    seen.clear()
    qemu.shutdown_domain(data["container_uuid"])  # ACPI: the guest powers itself off
    wait_for(lambda: running.engine.registry.count().get() == 0, 60, "reaper cleanup")
    wait_for(lambda: "on_container_domain_stopped" in event_names(seen), 10, "stop event")
    reaped = [(name, context) for name, context, _ in seen if name in event_names(seen)]
    assert reaped == [
        ("on_forwarder_stopped", seed.CONTEXT_AUTOMATIC_ACTION),
        ("on_container_domain_stopped", seed.CONTEXT_AUTOMATIC_ACTION),
    ]
    assert refuses(data["container_listen_port"])
    assert not running.engine.journal.verify_credentials(
        data["container_uuid"], data["client_token"]
    )
    assert_nothing_left(running, qemu, data["container_uuid"])


def test_stop_server_stops_every_container(make_vm_server, qemu):
    running = make_vm_server()
    created = client_for(running).create()
    assert created["success"] is True, created
    running.stop()
    assert created["data"]["container_uuid"] not in qemu.list_marked()
    assert refuses(created["data"]["container_listen_port"])


@pytest.mark.parametrize(
    "failure", ["unreadable-iso", "wrong-endpoint-password", "failing-setup", "no-free-port"]
)
def test_injected_failure_unwinds(make_vm_server, qemu, images, failure):
    overrides = {}
    iso = images["dev"]
    blocker = None
    if failure == "unreadable-iso":
        iso = images["folder"] / "missing.iso"
    elif failure == "wrong-endpoint-password":
        iso = images["wrong-endpoint-password"]
    elif failure == "failing-setup":
        iso = images["failing-setup"]
    elif failure == "no-free-port":
        blocker = socket.create_server(("127.0.0.1", 0))
        port = blocker.getsockname()[1]
        overrides["port_range"] = (port, port)
    running = make_vm_server(iso, **overrides)
    seen = record_events(running.server)
    try:
        response = client_for(running).create()
    finally:
        if blocker is not None:
            blocker.close()
    assert response == {"success": False, "message": "Internal error", "data": {}}
    wait_for(lambda: "on_client_closed" in [n for n, _, _ in seen], 10, "session end")
    names = [name for name, _, _ in seen]
    assert "on_runtime_error" in names
    started = "on_container_domain_started" in names
    assert started == (failure != "unreadable-iso")
    if started:
        # The unwinding fires the stop events with the error context.
        stops = [(n, c) for n, c, _ in seen if n == "on_container_domain_stopped"]
        assert stops == [("on_container_domain_stopped", seed.CONTEXT_ERROR)]
    if failure == "no-free-port":
        assert "on_endpoint_shell_closed" in names and "on_forwarder_started" not in names
    assert_nothing_left(running, qemu)
    for row in running.engine.journal.history(kind="container"):
        assert row["entity_id"] not in qemu.list_marked()
    # The slot is free again and the server still serves.
    assert client_for(running).stat()["data"]["available"] == 6
