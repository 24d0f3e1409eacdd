"""A hypervisor host unreachable past ``host_lost_grace``: its containers are ``lost``.

libvirt is reached through a relay socket (tests/libvirtd.py): stopping the relay cuts the
server's connection exactly as a dead daemon would, while the system libvirtd (and the
guests it runs) go on. The grace arithmetic is checked on its own, the machine's edges
through a real journal, the sweep on stand-in containers (libvirt's test driver, real
forwarders, credentials and clients) watched through a relay link, the warm pool's ready
containers on libvirtd's own test driver reached through the relay, and the whole story
once with a real guest (``vm``): lose → events → token refused → capacity freed → relay
back → leftover domain destroyed and journalled.
"""

from __future__ import annotations

import socket
import uuid

import pykka
import pytest
from libvirtd import RECONNECT_BOUND, SYSTEM_SOCKET
from serverharness import RunningServer, record_events, serve_stand_in, stand_in_server, wait_for

from anweddol_actors.actors.base import EntityActor
from anweddol_actors.actors.forwarder import ForwarderActor
from anweddol_actors.client import Client
from anweddol_actors.core.server import ServerInterface
from anweddol_actors.engine.admin import status
from anweddol_actors.engine.context import HypervisorLink
from anweddol_actors.engine.hostloss import HostWatch, Outage, poll_interval
from anweddol_actors.engine.settings import LOCAL_HOST, Settings
from anweddol_actors.hypervisor import Hypervisor, ensure_daemons
from anweddol_actors.image import ensure_image
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import IllegalTransition, Lifecycle
from anweddol_actors.lifecycle.events import (
    CONTEXT_AUTOMATIC_ACTION,
    EVENT_CONTAINER_DOMAIN_STOPPED,
    backs,
)
from tests.guest.loopback_ssh import LoopbackSSH

GRACE = 2.0
# How long a loss may take to be declared: the grace, a look, and a loaded 2-core machine.
LOSS_BOUND = GRACE + 30
STAND_IN_PORTS = (47200, 47299)
FORWARDER_PORTS = (47000, 47099)
GUEST_PORTS = (47100, 47199)
POOL_PORTS = (47300, 47399)
# libvirtd serves its own test driver too: reached through the relay, a stand-in host
# whose domains outlive the cut connection, as a real host's guests do.
DAEMON_TEST_DRIVER = "test+unix:///default?socket={socket}"


def last_row(journal: Journal, entity_id: str, trigger: str) -> dict:
    rows = [
        row for row in journal.history(entity_id, kind="container") if row["trigger"] == trigger
    ]
    assert rows, f"no {trigger} journalled for {entity_id}"
    return rows[-1]


def refused(port: int) -> bool:
    """Nothing listens on 127.0.0.1:``port`` any more."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


# -- the grace -----------------------------------------------------------------------------


def test_lost_only_after_a_continuous_outage_longer_than_the_grace():
    outage = Outage(grace=2.0)
    assert outage.observe(True, 100.0) is None
    assert outage.observe(False, 101.0) is None  # the outage begins
    assert outage.observe(False, 103.0) is None  # exactly the grace: not past it
    assert outage.observe(False, 103.5) == pytest.approx(2.5)
    # One look that answers ends the outage; the next one counts from zero.
    assert outage.observe(True, 104.0) is None
    assert outage.observe(False, 105.0) is None
    assert outage.observe(False, 106.9) is None
    assert outage.observe(False, 107.5) == pytest.approx(2.5)


def test_the_link_is_looked_at_often_enough_for_the_grace():
    assert poll_interval(2.0) == 0.5
    assert poll_interval(60.0) == 1.0
    assert poll_interval(0.01) == 0.1


# -- the machine ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        ("start",),
        ("start", "administer"),
        ("start", "administer", "pool"),
        ("start", "administer", "serve"),
    ],
)
def test_a_started_container_may_be_lost_then_only_destroyed(path):
    with Journal(":memory:") as journal:
        container = Lifecycle("container", str(uuid.uuid4()), journal)
        container.create()
        for trigger in path:
            container.fire(trigger)
        lose = container.fire("lose", details={"host": "local", "unreachable_for": 2.5})
        assert (lose.dest, container.state) == ("lost", "lost")
        assert backs(lose, EVENT_CONTAINER_DOMAIN_STOPPED)
        for trigger in ("serve", "stop", "fail", "lose", "start"):
            with pytest.raises(IllegalTransition):
                container.fire(trigger)
        assert container.fire("destroy").dest == "destroyed"
        assert [row["trigger"] for row in journal.history(container.entity_id)][-2:] == [
            "lose",
            "destroy",
        ]


@pytest.mark.parametrize("path", [(), ("start", "stop"), ("start", "fail")])
def test_a_container_not_started_is_never_lost(path):
    with Journal(":memory:") as journal:
        container = Lifecycle("container", str(uuid.uuid4()), journal)
        container.create()
        for trigger in path:
            container.fire(trigger)
        with pytest.raises(IllegalTransition):
            container.fire("lose")


# -- the sweep, on stand-in containers -----------------------------------------------------


def test_containers_of_a_host_away_past_the_grace_are_lost(tmp_path, rsa, relay):
    """Stand-in containers on libvirt's test driver, their host watched through a relay
    link: the relay stopped past the grace, they are lost; back, they end destroyed."""
    relay.start()
    database = str(tmp_path / "journal.sqlite3")
    running = stand_in_server(rsa, tmp_path, STAND_IN_PORTS, database=database).start()
    link = HypervisorLink(Settings(libvirt_uri=relay.uri, domain_type="qemu"))
    watch = None
    try:
        engine = running.engine
        context = engine.context
        seen = record_events(running.server)
        first, first_token = serve_stand_in(engine)
        second, _ = serve_stand_in(engine)
        ports = {entry.uuid: entry.forwarder.port.get() for entry in context.registry.live().get()}
        client = Client(*running.address, timeout=30)
        assert client.stat()["data"]["available"] == 2  # 4 slots, 2 taken
        wait_for(link.reachable, RECONNECT_BOUND, "relay link connected")
        watch = HostWatch(context, LOCAL_HOST, link, grace=GRACE)
        watch.start()

        relay.stop()
        wait_for(watch.lost.is_set, LOSS_BOUND, "host declared lost")
        # Claimed at once, their slots freed once each is lost whole.
        wait_for(lambda: context.registry.available().get() == 4, 30, "containers lost")
        journal = context.journal
        for container_uuid in (first, second):
            assert journal.entity(container_uuid, kind="container")["state"] == "lost"
            lose = last_row(journal, container_uuid, "lose")
            assert lose["details"]["host"] == LOCAL_HOST
            assert lose["details"]["unreachable_for"] >= GRACE
            assert lose["context"] == CONTEXT_AUTOMATIC_ACTION
            forwarder = journal.entity(f"{container_uuid}.forwarder", kind="forwarder")
            assert forwarder["state"] == "destroyed"
            assert refused(ports[container_uuid])
        stops = [event for event, ctx, _ in seen if event == EVENT_CONTAINER_DOMAIN_STOPPED]
        assert len(stops) == 2
        assert sum(1 for event, _, _ in seen if event == "on_forwarder_stopped") == 2
        # The token is refused as for an unknown container; the slots are free.
        assert client.destroy(first, first_token)["message"] == "Bad authentication"
        assert client.stat()["data"]["available"] == 4

        relay.start()
        wait_for(
            lambda: (
                journal.entity(first, kind="container")["state"] == "destroyed"
                and journal.entity(second, kind="container")["state"] == "destroyed"
            ),
            RECONNECT_BOUND + 10,
            "lost containers ended once the host is back",
        )
        assert not watch.lost.is_set()
        destroy = last_row(journal, first, "destroy")
        # The stand-ins' domains live in the test driver, not behind the relay.
        assert destroy["details"]["reason"] == "host local back: no leftover domain"
        assert watch.lost_here() == []
    finally:
        if watch is not None:
            watch.stop()
        running.stop()
        link.close()


def test_a_null_grace_never_loses_anything(tmp_path, rsa, relay):
    running = stand_in_server(rsa, tmp_path, STAND_IN_PORTS).start()
    link = HypervisorLink(Settings(libvirt_uri=relay.uri, domain_type="qemu"))
    try:
        context = running.engine.context
        context.settings.host_lost_grace = None
        watch = HostWatch(context, LOCAL_HOST, link)
        watch.start()  # the relay never listens: the link is unreachable all along
        serve_stand_in(running.engine)
        assert not watch.watching  # no watcher: nothing can ever be lost
        watch.stop()
        assert context.registry.count().get() == 1
    finally:
        running.stop()
        link.close()


# -- the warm pool's containers, on stand-in guests -----------------------------------------


def test_the_warm_pools_containers_of_a_lost_host_are_lost_then_their_domains_destroyed(
    tmp_path, rsa, relay
):
    """A warm pool on libvirtd's test driver reached through the relay (the server's own
    host link, watched by the server's own watcher), its guests a loopback SSH server:
    the relay stopped past the grace, the ready pooled containers are lost whole (their
    slots, ports and actors given back); back, their leftover domains are destroyed."""
    relay.start()
    with LoopbackSSH() as guest:
        running = stand_in_server(
            rsa,
            tmp_path,
            POOL_PORTS,
            database=str(tmp_path / "journal.sqlite3"),
            libvirt_uri=DAEMON_TEST_DRIVER.format(socket=relay.path),
            warm_pool_size=2,
            max_containers=3,
            guest_port_range=(guest.port, guest.port),
            ready_timeout=10.0,
            host_lost_grace=GRACE,
        ).start()
        engine = running.engine
        context = engine.context
        journal = context.journal
        registry = context.registry
        daemon = Hypervisor(DAEMON_TEST_DRIVER.format(socket=SYSTEM_SOCKET))
        cut = False
        try:

            def ready() -> int:
                return status(context, engine.listen_address)["warm_pool"]["ready"]

            wait_for(lambda: ready() == 2, 60, "2 pooled ready")
            pooled = [row["entity_id"] for row in journal.live_entities(kind="container")]
            assert len(pooled) == 2
            assert all(daemon.is_active(each) for each in pooled)
            # Their forwarders' ports, reserved (not journalled before the relaying starts).
            forwarders = pykka.ActorRegistry.get_by_class(ForwarderActor)
            ports = [forwarder.proxy().port.get() for forwarder in forwarders]
            assert len(ports) == 2
            assert not any(refused(port) for port in ports)  # reserved: listening
            # Each holds a slot of the pool's: one of the 3 left for a cold CREATE.
            assert (registry.pooled_count().get(), registry.available().get()) == (2, 1)
            assert len(pykka.ActorRegistry.get_by_class(EntityActor)) == 6  # 3 each

            relay.stop()
            cut = True
            wait_for(
                lambda: all(
                    journal.entity(each, kind="container")["state"] == "lost" for each in pooled
                ),
                LOSS_BOUND,
                "pooled containers lost",
            )
            for each in pooled:
                lose = last_row(journal, each, "lose")
                assert lose["details"]["host"] == LOCAL_HOST
                assert lose["details"]["unreachable_for"] >= GRACE
                assert lose["context"] == CONTEXT_AUTOMATIC_ACTION
                assert lose["source"] == "started_pooled"
            # Then, each lost whole: its port freed, its actors ended, its slot given back.
            wait_for(lambda: registry.pooled_count().get() == 0, 30, "pool slots given back")
            assert registry.available().get() == 3
            assert ready() == 0
            assert all(refused(port) for port in ports)
            assert pykka.ActorRegistry.get_by_class(EntityActor) == []
            for each in pooled:
                forwarder = journal.entity(f"{each}.forwarder", kind="forwarder")
                assert forwarder["state"] == "destroyed"
            # Their domains live on behind the cut connection: the leftovers to destroy.
            assert all(daemon.is_active(each) for each in pooled)

            relay.start()
            cut = False
            wait_for(
                lambda: all(
                    journal.entity(each, kind="container")["state"] == "destroyed"
                    for each in pooled
                ),
                RECONNECT_BOUND + 30,
                "leftover domains destroyed",
            )
            for each in pooled:
                reason = last_row(journal, each, "destroy")["details"]["reason"]
                assert reason == "host local back: leftover domain destroyed"
                assert not daemon.is_active(each)
            assert set(pooled).isdisjoint(daemon.list_marked(owner=engine.owner))
        finally:
            if cut:
                relay.start()  # the server's stop ends what it still has, reachable
            running.stop()
            # Whatever a failure left behind in the daemon's test driver.
            for domain_uuid in daemon.list_marked(owner=engine.owner):
                daemon.destroy_domain(domain_uuid)
            daemon.close()


# -- the whole story with a real guest -----------------------------------------------------


@pytest.mark.vm
def test_a_real_guest_lost_then_its_domain_destroyed(tmp_path, rsa, relay):
    ensure_daemons("qemu:///system")
    relay.start()
    settings = Settings(
        iso_path=str(ensure_image()),
        database=str(tmp_path / "journal.sqlite3"),
        libvirt_uri=relay.uri,
        network_mode="user",
        container_memory=256,
        container_vcpus=1,
        port_range=FORWARDER_PORTS,
        forward_bind_address="127.0.0.1",
        guest_port_range=GUEST_PORTS,
        ready_timeout=120,
        reaper_poll_interval=2.0,
        warm_pool_size=0,
        max_containers=1,
        host_lost_grace=GRACE,
    )
    server = ServerInterface(
        settings.iso_path, "127.0.0.1", 0, 10, runtime_rsa_wrapper=rsa, settings=settings
    )
    running = RunningServer(server).start()
    qemu = Hypervisor("qemu:///system")  # libvirtd itself, not through the relay
    made = None
    try:
        context = running.engine.context
        journal = context.journal
        seen = record_events(server)
        client = Client(*running.address, timeout=240)
        created = client.create()
        assert created["success"] is True, created
        data = created["data"]
        made = data["container_uuid"]
        assert client.stat()["data"]["available"] == 0

        relay.stop()
        wait_for(
            lambda: journal.entity(made, kind="container")["state"] == "lost",
            LOSS_BOUND,
            "container lost",
        )
        lose = last_row(journal, made, "lose")
        assert lose["details"]["unreachable_for"] >= GRACE
        assert journal.entity(made, kind="container")["data"]["host"] == LOCAL_HOST
        wait_for(lambda: context.registry.available().get() == 1, 30, "claimed and freed")
        automatic = [(event, ctx) for event, ctx, _ in seen if ctx == CONTEXT_AUTOMATIC_ACTION]
        assert ("on_forwarder_stopped", CONTEXT_AUTOMATIC_ACTION) in automatic
        assert (EVENT_CONTAINER_DOMAIN_STOPPED, CONTEXT_AUTOMATIC_ACTION) in automatic
        assert client.destroy(made, data["client_token"])["message"] == "Bad authentication"
        # The slot is free, but STAT offers only the room of hosts that answer.
        assert client.stat()["data"]["available"] == 0
        assert refused(data["container_listen_port"])
        # The guest runs on behind the cut connection: the leftover to destroy later.
        assert qemu.is_active(made)

        relay.start()
        wait_for(
            lambda: journal.entity(made, kind="container")["state"] == "destroyed",
            RECONNECT_BOUND + 30,
            "leftover domain destroyed",
        )
        destroy = last_row(journal, made, "destroy")
        assert destroy["details"]["reason"] == "host local back: leftover domain destroyed"
        assert made not in qemu.list_marked()
        made = None
        wait_for(lambda: client.stat()["data"]["available"] == 1, 30, "the host's room back")
    finally:
        running.stop()
        if made is not None:
            qemu.destroy_domain(made)
        qemu.close()
