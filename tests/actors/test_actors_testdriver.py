"""The container and forwarder actors without booting anything: libvirt's own test driver
(test:///default) and real loopback sockets. Every step must be journalled, every end
must release what the actor holds."""

from __future__ import annotations

import socket
import threading
import uuid

import pytest
from serverharness import Echo

from anweddol_actors.actors.container import ContainerActor, ContainerSettings
from anweddol_actors.actors.endpoint_shell import EndpointShellActor
from anweddol_actors.actors.forwarder import ForwarderActor
from anweddol_actors.forwarding import PortRangeExhausted
from anweddol_actors.hypervisor import Hypervisor
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import IllegalTransition, Lifecycle


@pytest.fixture
def journal():
    j = Journal(":memory:")
    yield j
    j.close()


@pytest.fixture
def hypervisor():
    hv = Hypervisor("test:///default")
    yield hv
    hv.close()


@pytest.fixture
def container(journal, hypervisor, tmp_path):
    iso = tmp_path / "stand-in.iso"
    iso.write_bytes(b"\0" * 1024)
    settings = ContainerSettings(
        iso_path=str(iso), memory_mib=128, vcpus=1, domain_type="test", owner="unit"
    )
    proxy = ContainerActor.start(str(uuid.uuid4()), journal, hypervisor, settings).proxy()
    yield proxy
    if proxy.actor_ref.is_alive():
        proxy.actor_ref.stop()


def triggers(journal, entity_id):
    return [row["trigger"] for row in journal.history(entity_id=entity_id)]


def test_container_start_stop_is_journalled(container, journal, hypervisor):
    container.create(20).get()
    container.configure(memory_mib=200, vcpus=2).get()
    started = container.start_domain(20).get()
    assert (started.trigger, started.dest) == ("start", "started_booting")
    address = container.snapshot().get()["guest_address"]
    uid = container.uuid.get()
    assert address[0] == "127.0.0.1" and 30000 <= address[1] <= 39999
    assert uid in hypervisor.list_marked(owner="unit")
    assert hypervisor.list_marked(owner="someone-else") == []
    info = hypervisor.domain_info(uid)
    assert (info.memory_mib, info.vcpus) == (200, 2)
    entity = journal.entity(uid)
    assert entity["state"] == "started_booting"
    assert entity["data"]["memory_mib"] == 200
    with pytest.raises(RuntimeError, match="fixed"):
        container.configure(memory_mib=512).get()
    container.mark_administered("user_12345").get()
    assert journal.entity(uid)["data"]["forward_port"] == address[1]
    container.mark_serving(12000).get()
    assert container.stop_domain(20).get().trigger == "stop"
    assert uid not in hypervisor.list_marked()
    assert triggers(journal, uid) == ["create", "start", "administer", "serve", "stop", "destroy"]
    assert container.stop_domain().get() is None  # idempotent


def test_container_actor_stop_releases_its_domain(container, journal, hypervisor):
    container.create().get()
    container.start_domain().get()
    uid = container.uuid.get()
    container.actor_ref.stop()
    assert uid not in hypervisor.list_marked()
    assert triggers(journal, uid) == ["create", "start", "fail", "destroy"]
    assert journal.history(entity_id=uid)[2]["details"] == {"reason": "actor stopped"}


def test_refused_start_changes_nothing(container, journal, hypervisor):
    container.create().get()
    container.configure(memory_mib=0).get()
    uid = container.uuid.get()
    with pytest.raises(ValueError, match="memory"):
        container.start_domain().get()
    assert triggers(journal, uid) == ["create"]
    assert uid not in hypervisor.list_marked()
    assert container.snapshot().get()["state"] == "created"


def test_double_start_is_refused_before_a_second_domain(container, journal, hypervisor):
    container.create().get()
    container.start_domain().get()
    uid = container.uuid.get()
    with pytest.raises(IllegalTransition):
        container.start_domain().get()
    assert triggers(journal, uid) == ["create", "start"]
    assert hypervisor.list_marked(owner="unit") == [uid]
    container.stop_domain().get()


def test_a_failing_hypervisor_fails_the_container_through_its_machine(
    container, journal, hypervisor, monkeypatch
):
    """Supervision: an exception inside the actor, after its machine accepted ``start``,
    ends the container ``failed`` then ``destroyed`` and tells the supervisor."""
    told = []
    container.on_failed = lambda *args: told.append(args)  # proxy setattr: on the actor

    def broken(spec):
        raise RuntimeError("injected: libvirt went away")

    monkeypatch.setattr(hypervisor, "create_domain", broken)
    container.create().get()
    uid = container.uuid.get()
    with pytest.raises(RuntimeError, match="injected"):
        container.start_domain().get()
    assert triggers(journal, uid) == ["create", "start", "fail", "destroy"]
    assert "injected" in journal.history(entity_id=uid)[2]["details"]["reason"]
    assert [(entity_id, kind) for entity_id, kind, _, _ in told] == [(uid, "container")]
    assert told[0][2].trigger == "fail"


@pytest.fixture
def echo():
    server = Echo()
    yield server
    server.close()


def free_range(size: int = 20) -> tuple[int, int]:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        base = probe.getsockname()[1]
    return (base, min(65535, base + size))


def relay_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("forwarder-"))


def test_forwarder_relays_and_frees_its_port(journal, echo):
    proxy = ForwarderActor.start(
        "c.forwarder", journal, free_range(), "127.0.0.1", ("127.0.0.1", echo.port)
    ).proxy()
    try:
        proxy.create(20).get()
        port = proxy.describe().get()["port"]
        assert proxy.start_forwarding(20).get().dest == "started"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"SSH-2.0-hello\r\n")
            assert client.recv(100) == b"SSH-2.0-hello\r\n"
        assert proxy.describe().get()["forwarding"] is True
        assert proxy.stop_forwarding(20).get().trigger == "stop"
        socket.create_server(("127.0.0.1", port)).close()  # the port is free again
        assert triggers(journal, "c.forwarder") == ["create", "start", "stop", "destroy"]
    finally:
        proxy.actor_ref.stop()


def test_double_start_leaks_no_relay(journal, echo):
    before = relay_threads()
    proxy = ForwarderActor.start(
        "d.forwarder", journal, free_range(), "127.0.0.1", ("127.0.0.1", echo.port)
    ).proxy()
    try:
        proxy.create().get()
        proxy.start_forwarding().get()
        with pytest.raises(IllegalTransition):
            proxy.start_forwarding().get()
        assert relay_threads() == before + 1
        assert triggers(journal, "d.forwarder") == ["create", "start"]
    finally:
        proxy.actor_ref.stop()
    assert relay_threads() == before


def test_forwarder_on_a_full_range(journal, echo):
    blocker = socket.create_server(("127.0.0.1", 0))
    port = blocker.getsockname()[1]
    proxy = ForwarderActor.start(
        "f.forwarder", journal, (port, port), "127.0.0.1", ("127.0.0.1", echo.port)
    ).proxy()
    try:
        with pytest.raises(PortRangeExhausted):
            proxy.create().get()
        # Asked first, then acted: the creation is journalled, then its failure.
        assert triggers(journal, "f.forwarder") == ["create", "fail", "destroy"]
    finally:
        proxy.actor_ref.stop()
        blocker.close()


def test_a_relay_that_cannot_start_fails_the_forwarder_and_frees_the_port(
    journal, echo, monkeypatch
):
    from anweddol_actors.forwarding import relay as relay_module

    def broken(self):
        raise OSError("injected: no thread for the relay")

    monkeypatch.setattr(relay_module.Relay, "start", broken)
    proxy = ForwarderActor.start(
        "x.forwarder", journal, free_range(), "127.0.0.1", ("127.0.0.1", echo.port)
    ).proxy()
    try:
        proxy.create().get()
        port = proxy.describe().get()["port"]
        with pytest.raises(OSError, match="injected"):
            proxy.start_forwarding().get()
        assert triggers(journal, "x.forwarder") == ["create", "start", "fail", "destroy"]
        socket.create_server(("127.0.0.1", port)).close()  # released
    finally:
        proxy.actor_ref.stop()


def test_a_shell_that_cannot_log_in_fails_through_its_machine_and_refuses_a_second_open(journal):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        dead_port = probe.getsockname()[1]  # closed once the block ends: connect refused
    proxy = EndpointShellActor.start(
        "s.shell", journal, "127.0.0.1", dead_port, "endpoint", "endpoint", 2.0
    ).proxy()
    try:
        proxy.create().get()
        with pytest.raises(Exception):  # noqa: B017 - whatever paramiko raises
            proxy.open().get()
        assert triggers(journal, "s.shell") == ["create", "open", "fail", "destroy"]
        assert proxy.ssh_client().get() is None
        with pytest.raises(IllegalTransition):
            proxy.open().get()
        assert triggers(journal, "s.shell") == ["create", "open", "fail", "destroy"]
    finally:
        proxy.actor_ref.stop()


def test_forwarder_resumes_on_its_journalled_port(journal, echo):
    first = ForwarderActor.start(
        "r.forwarder", journal, free_range(), "127.0.0.1", ("127.0.0.1", echo.port)
    ).proxy()
    first.create().get()
    port = first.describe().get()["port"]
    first.start_forwarding().get()
    first.stop_forwarding().get()
    first.actor_ref.stop()
    # As after a crash: the journal says started; a new actor relays on the same port.
    journal_row = {"port": port, "target": ["127.0.0.1", echo.port]}
    resumed = Lifecycle("forwarder", "r2.forwarder", journal, journal_row, state="started")
    second = ForwarderActor.start(
        "r2.forwarder", journal, (port, port), "127.0.0.1", ("127.0.0.1", echo.port), resumed
    ).proxy()
    try:
        assert second.resume_forwarding().get() == port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"again")
            assert client.recv(10) == b"again"
    finally:
        second.actor_ref.stop()
    assert triggers(journal, "r2.forwarder") == ["fail", "destroy"]
