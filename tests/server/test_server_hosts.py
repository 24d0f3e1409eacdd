"""Several hypervisor hosts behind one server, on libvirt's test driver (each host its own
driver instance) with a loopback SSH server standing in for the guests: placement (one
CREATE per host at capacity 1, the third refused), drain and enable (journalled), STAT's
sum, a host whose libvirt does not answer (filtered out, reconciled once it answers), and
the start's reconciliation per host. Real server, client, sockets and SQLite journal."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace

import pytest
from hostsharness import hosts_server, marked_domains, node_host
from libvirtd import RECONNECT_BOUND
from serverharness import wait_for

from anweddol_actors.client import Client
from anweddol_actors.engine import placement
from anweddol_actors.engine.admin import AdminRefused, list_hosts, set_host_enabled, status
from anweddol_actors.engine.placement import HostView
from anweddol_actors.engine.settings import HostSettings
from anweddol_actors.engine.verbs import new_client_token
from anweddol_actors.image.checksum import iso_sha256
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle

FULL = "Unavailable (The maximum amount of running containers is reached)"


@pytest.fixture
def make(rsa, tmp_path, guest):
    """Factory: a server on ``hosts`` (default: alpha and beta, capacity 1 each), not
    started; stopped at teardown, checked to leave no domain on any host."""
    made = []

    def factory(hosts: tuple[HostSettings, ...] | None = None, **overrides):
        if hosts is None:
            hosts = (node_host(tmp_path, "alpha"), node_host(tmp_path, "beta"))
        running = hosts_server(rsa, tmp_path, guest.port, hosts, **overrides)
        made.append(running)
        return running

    yield factory
    for running in made:
        if running.thread.is_alive():
            stop(running)


def stop(running) -> None:
    """Stop the server and check that it left no domain on any host it reaches."""
    running.server.stopServer()
    running.thread.join(120)
    assert not running.thread.is_alive()
    try:
        assert all(domains == [] for domains in marked_domains(running).values())
    finally:
        running.server.close()


def host_of(running, container_uuid: str) -> str:
    """The host the journal says a container was made on."""
    return running.engine.journal.entity(container_uuid)["data"]["host"]


def available(client: Client) -> int:
    return client.stat()["data"]["available"]


# -- placement: pure ----------------------------------------------------------------------


def test_placement_filters_and_weighs():
    views = [
        HostView("drained", enabled=False, ready=True, free_slots=9),
        HostView("down", enabled=True, ready=False, free_slots=9),
        HostView("full", enabled=True, ready=True, free_slots=0),
        HostView("small", enabled=True, ready=True, free_slots=1, free_memory=10),
        HostView("roomy", enabled=True, ready=True, free_slots=3, free_memory=1),
        HostView("rich", enabled=True, ready=True, free_slots=1, free_memory=99),
        HostView("unknown", enabled=True, ready=True, free_slots=1),
    ]
    chosen = placement.ranked(placement.eligible(views, server_free=None))
    assert [view.name for view in chosen] == ["roomy", "rich", "small", "unknown"]
    unlimited = HostView("unlimited", enabled=True, ready=True, free_slots=None)
    assert placement.ranked([*chosen, unlimited])[0] is unlimited
    # The server's own cap reached: nobody, whatever the hosts have.
    assert placement.eligible(views, server_free=0) == []


# -- placement on a running server ----------------------------------------------------------


def test_two_creates_land_one_on_each_host_and_a_third_is_refused(make):
    running = make().start()
    client = Client(*running.address, timeout=30)
    assert available(client) == 2
    first = client.create()
    assert first["success"] is True, first
    assert available(client) == 1
    second = client.create()
    assert second["success"] is True, second
    uuids = [first["data"]["container_uuid"], second["data"]["container_uuid"]]
    assert sorted(host_of(running, each) for each in uuids) == ["alpha", "beta"]
    # Each domain is on the host the journal names, and only there.
    domains = marked_domains(running)
    for each in uuids:
        assert domains[host_of(running, each)] == [each]
    live = {entry.uuid: entry.host for entry in running.engine.registry.live().get()}
    assert live == {each: host_of(running, each) for each in uuids}

    assert available(client) == 0
    third = client.create()
    assert (third["success"], third["message"]) == (False, FULL)

    # A DESTROY frees its own host's slot: the next CREATE goes there.
    freed = host_of(running, uuids[0])
    destroyed = client.destroy(uuids[0], first["data"]["client_token"])
    assert destroyed["success"] is True, destroyed
    assert available(client) == 1
    again = client.create()
    assert again["success"] is True, again
    assert host_of(running, again["data"]["container_uuid"]) == freed
    stop(running)


def test_the_server_wide_cap_bounds_the_hosts(make):
    running = make(max_containers=1).start()
    client = Client(*running.address, timeout=30)
    assert available(client) == 1
    assert client.create()["success"] is True
    assert available(client) == 0
    assert client.create()["message"] == FULL
    stop(running)


def test_a_drained_host_gets_nothing_until_enabled(make):
    running = make().start()
    context = running.engine.context
    client = Client(*running.address, timeout=30)
    drained = set_host_enabled(context, "beta", False)
    assert (drained["name"], drained["enabled"]) == ("beta", False)
    assert context.journal.host_enabled("beta") is False
    assert available(client) == 1

    first = client.create()
    assert host_of(running, first["data"]["container_uuid"]) == "alpha"
    refused = client.create()
    assert refused["message"] == FULL  # beta has room, but it is drained

    set_host_enabled(context, "beta", True)
    assert available(client) == 1
    second = client.create()
    assert second["success"] is True, second
    assert host_of(running, second["data"]["container_uuid"]) == "beta"
    stop(running)


def test_a_drain_survives_a_restart(make, tmp_path):
    running = make().start()
    set_host_enabled(running.engine.context, "alpha", False)
    stop(running)

    again = make().start()
    rows = {row["name"]: row for row in list_hosts(again.engine.context)}
    assert (rows["alpha"]["enabled"], rows["beta"]["enabled"]) == (False, True)
    client = Client(*again.address, timeout=30)
    assert available(client) == 1
    created = client.create()
    assert host_of(again, created["data"]["container_uuid"]) == "beta"
    stop(again)


def test_an_unknown_host_is_refused_by_name(make):
    running = make().start()
    with pytest.raises(AdminRefused, match="no host named 'gamma' \\(known: alpha, beta\\)"):
        set_host_enabled(running.engine.context, "gamma", False)
    assert running.engine.journal.host_enabled("gamma") is True  # nothing journalled
    stop(running)


def test_a_host_whose_libvirt_does_not_answer_is_filtered_out(make, tmp_path, relay):
    # The most room of all, but unreachable: placement must pass it over.
    down = HostSettings("gamma", relay.uri, max_containers=5, domain_type="qemu")
    hosts = (node_host(tmp_path, "alpha"), node_host(tmp_path, "beta"), down)
    running = make(hosts=hosts, max_containers=None).start()
    context = running.engine.context
    client = Client(*running.address, timeout=30)
    assert available(client) == 2  # gamma's 5 are not counted
    rows = {row["name"]: row for row in list_hosts(context)}
    assert rows["gamma"]["reachable"] is False
    assert (rows["alpha"]["reachable"], rows["beta"]["reachable"]) == (True, True)
    assert status(context, running.engine.listen_address)["hosts"] == {
        "total": 3,
        "enabled": 3,
        "reachable": 2,
    }
    made = [client.create() for _ in range(2)]
    assert all(answer["success"] for answer in made), made
    hosts_used = {host_of(running, answer["data"]["container_uuid"]) for answer in made}
    assert hosts_used == {"alpha", "beta"}
    assert client.create()["message"] == FULL
    assert not context.recovered.is_set()  # gamma was never reconciled

    relay.start()
    wait_for(context.recovered.is_set, RECONNECT_BOUND, "gamma reconciled once it answers")
    assert {row["name"]: row["reachable"] for row in list_hosts(context)}["gamma"] is True
    assert available(client) == 5
    stop(running)


# -- the start's reconciliation, per host ---------------------------------------------------


def earlier_run(database: str, hosts: list[str | None]) -> dict[str | None, tuple[str, str]]:
    """A journal as a crashed run leaves it: one serving container with credentials per
    entry of ``hosts`` (None: journalled before hosts existed, no ``"host"``). Returns
    host -> (container uuid, token)."""
    left = {}
    with Journal(database) as journal:
        for host in hosts:
            container_uuid, token = str(uuid.uuid4()), new_client_token()
            container = Lifecycle("container", container_uuid, journal)
            data = {"domain_uuid": container_uuid}
            if host is not None:
                data["host"] = host
            container.create(data=data)
            for trigger in ("start", "administer", "serve"):
                container.fire(trigger)
            journal.store_credentials(container_uuid, token)
            left[host] = (container_uuid, token)
    return left


def test_restart_reconciles_each_host_when_it_answers(make, tmp_path, relay):
    database = str(tmp_path / "journal.sqlite3")
    left = earlier_run(database, ["alpha", "gamma", None])
    down = HostSettings("gamma", relay.uri, max_containers=1, domain_type="qemu")
    running = make(hosts=(node_host(tmp_path, "alpha"), down)).start()
    context = running.engine.context
    journal = context.journal
    state = {host: journal.entity(each[0])["state"] for host, each in left.items()}
    # alpha's container and the one journalled before hosts existed (the first host's)
    # are reconciled at start; gamma's waits for gamma, its credentials still good.
    assert state == {"alpha": "destroyed", None: "destroyed", "gamma": "started_serving"}
    assert journal.verify_credentials(*left["gamma"])
    assert not journal.verify_credentials(*left["alpha"])
    # alpha serves meanwhile.
    client = Client(*running.address, timeout=30)
    created = client.create()
    assert host_of(running, created["data"]["container_uuid"]) == "alpha"

    relay.start()
    wait_for(context.recovered.is_set, RECONNECT_BOUND, "gamma reconciled")
    assert journal.entity(left["gamma"][0])["state"] == "destroyed"
    assert not journal.verify_credentials(*left["gamma"])
    # alpha's live container was not taken for an orphan by gamma's reconciliation.
    assert journal.entity(created["data"]["container_uuid"])["state"] == "started_serving"
    stop(running)


# -- the warm pool, per host ----------------------------------------------------------------


def pool_status(running) -> dict:
    return status(running.engine.context, running.engine.listen_address)["warm_pool"]


def test_each_host_has_its_own_warm_pool(make):
    running = make(warm_pool_size=1).start()
    wait_for(lambda: pool_status(running)["ready"] == 2, 30, "a pooled container on each host")
    assert pool_status(running) == {"size": 2, "ready": 2, "filling": 0}
    pooled_on = {
        row["data"]["host"]
        for row in running.engine.journal.live_entities(kind="container")
        if row["state"] == "started_pooled"
    }
    assert pooled_on == {"alpha", "beta"}
    client = Client(*running.address, timeout=30)
    # No free slot left (each host's one holds its pooled container), two ready ones.
    assert available(client) == 2
    made = [client.create() for _ in range(2)]
    assert all(answer["success"] for answer in made), made
    uuids = [answer["data"]["container_uuid"] for answer in made]
    # Both were handed over (no cold boot): one from each host's pool.
    assert {host_of(running, each) for each in uuids} == {"alpha", "beta"}
    assert all(
        "pool" in [row["trigger"] for row in running.engine.journal.history(each)] for each in uuids
    )
    assert pool_status(running)["ready"] == 0
    assert client.create()["message"] == FULL
    stop(running)


def test_a_hosts_own_iso_is_used_and_its_checksum_falls_back(make, tmp_path):
    """A host's ``iso_path`` is the one its domains boot; when this server cannot read it
    (it lives on the remote host's disk), the CREATE answer carries the server's own
    ISO's checksum instead of failing."""
    remote = replace(node_host(tmp_path, "remote"), iso_path="/srv/remote-only/container.iso")
    running = make(hosts=(remote,)).start()
    created = Client(*running.address, timeout=30).create()
    assert created["success"] is True, created
    container_uuid = created["data"]["container_uuid"]
    data = running.engine.journal.entity(container_uuid)["data"]
    assert (data["host"], data["iso_path"]) == ("remote", "/srv/remote-only/container.iso")
    own_iso = running.engine.settings.iso_path
    assert created["data"]["container_iso_sha256"] == iso_sha256(own_iso)
    stop(running)


def test_concurrent_claims_fill_each_host_exactly_once(make):
    """Many placements at once (CREATEs racing for the last slots): each host's one slot
    goes to exactly one of them, a claim lost on one host goes on to the other, and the
    rest get nothing."""
    running = make().start()
    context = running.engine.context
    barrier = threading.Barrier(8)
    placed: list[str | None] = []
    lock = threading.Lock()

    def claim() -> None:
        barrier.wait(10)
        host = placement.place(context)
        with lock:
            placed.append(host)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(host for host in placed if host is not None) == ["alpha", "beta"]
    assert placed.count(None) == 6
    usage = context.registry.host_usage().get()
    assert (usage["alpha"]["used"], usage["beta"]["used"]) == (1, 1)
    for host in ("alpha", "beta"):
        context.registry.release_slot(False, host).get()
    assert context.registry.available().get() == 2
    stop(running)
