"""The container and forwarder actors without booting anything: libvirt's own test driver
(test:///default) and real loopback sockets. Every step must be journalled, every end
must release what the actor holds."""

from __future__ import annotations

import socket
import threading
import uuid

import pytest

from anweddol_actors.actors.container import ContainerActor, ContainerSettings
from anweddol_actors.actors.forwarder import ForwarderActor
from anweddol_actors.forwarding import PortRangeExhausted
from anweddol_actors.hypervisor import Hypervisor
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle


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
    container.configure(memory_mib=200, vcpus=2).get()
    address = container.start_domain(20).get()
    uid = container.uuid.get()
    assert address[0] == "127.0.0.1" and 30000 <= address[1] <= 39999
    assert uid in hypervisor.list_marked(owner="unit")
    assert hypervisor.list_marked(owner="someone-else") == []
    info = hypervisor.domain_info(uid)
    assert (info.memory_mib, info.vcpus) == (200, 2)
    entity = journal.entity(uid)
    assert entity["state"] == "started_booting"
    assert entity["data"]["memory_mib"] == 200 and entity["data"]["forward_port"] == address[1]
    with pytest.raises(RuntimeError, match="fixed"):
        container.configure(memory_mib=512).get()
    container.mark_administered("user_12345").get()
    container.mark_serving(12000).get()
    assert container.stop_domain(20).get() is True
    assert uid not in hypervisor.list_marked()
    assert triggers(journal, uid) == ["start", "administer", "serve", "stop", "destroy"]
    assert container.stop_domain().get() is False  # idempotent


def test_container_actor_stop_releases_its_domain(container, journal, hypervisor):
    container.start_domain().get()
    uid = container.uuid.get()
    container.actor_ref.stop()
    assert uid not in hypervisor.list_marked()
    assert triggers(journal, uid) == ["start", "fail", "destroy"]
    assert journal.history(entity_id=uid)[1]["details"] == {"reason": "actor stopped"}


def test_refused_start_leaves_no_transition_and_no_domain(container, journal, hypervisor):
    container.configure(memory_mib=0).get()
    uid = container.uuid.get()
    with pytest.raises(ValueError, match="memory"):
        container.start_domain().get()
    assert journal.history(entity_id=uid) == []
    assert uid not in hypervisor.list_marked()
    assert container.snapshot().get()["state"] == "created"


class Echo:
    """A loopback echo server standing in for the guest's SSH port."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def echo():
    server = Echo()
    yield server
    server.close()


def free_range(size: int = 20) -> tuple[int, int]:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        base = probe.getsockname()[1]
    return (base, min(65535, base + size))


def test_forwarder_relays_and_frees_its_port(journal, echo):
    proxy = ForwarderActor.start(
        "c.forwarder", journal, free_range(), "127.0.0.1", ("127.0.0.1", echo.port)
    ).proxy()
    try:
        port = proxy.start_forwarding(20).get()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"SSH-2.0-hello\r\n")
            assert client.recv(100) == b"SSH-2.0-hello\r\n"
        assert proxy.describe().get()["forwarding"] is True
        assert proxy.stop_forwarding(20).get() is True
        socket.create_server(("127.0.0.1", port)).close()  # the port is free again
        assert triggers(journal, "c.forwarder") == ["start", "stop", "destroy"]
    finally:
        proxy.actor_ref.stop()


def test_forwarder_on_a_full_range(journal, echo):
    blocker = socket.create_server(("127.0.0.1", 0))
    port = blocker.getsockname()[1]
    proxy = ForwarderActor.start(
        "f.forwarder", journal, (port, port), "127.0.0.1", ("127.0.0.1", echo.port)
    ).proxy()
    try:
        with pytest.raises(PortRangeExhausted):
            proxy.reserve().get()
        assert journal.history(entity_id="f.forwarder") == []
    finally:
        proxy.actor_ref.stop()
        blocker.close()


def test_forwarder_resumes_on_its_journalled_port(journal, echo):
    first = ForwarderActor.start(
        "r.forwarder", journal, free_range(), "127.0.0.1", ("127.0.0.1", echo.port)
    ).proxy()
    port = first.start_forwarding().get()
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
