"""Two front ends on one PostgreSQL journal, in one process, without a VM: both on the
host ``h``, libvirt's ``test:///default`` (one driver instance that every connection of the
process shares, as two front ends share a real host), capacity 1, guests standing in as a
loopback SSH server.

What is checked: the host's capacity is shared (a CREATE at the other front end is
refused, STAT says so), a DESTROY at the other front end ends the container at its owner
(told through LISTEN/NOTIFY: the forwarder stops, the slot is given back), and a front end
that stops renewing its lease has its containers ended by the other, journalled with why.
The same with real VMs and real ``serve`` processes: tests/e2e/test_e2e_front_ends.py.
"""

from __future__ import annotations

import threading

import pytest
from hostsharness import free_range
from probes import refuses
from serverharness import stand_in_server, wait_for

from anweddol_actors.client import Client
from anweddol_actors.engine import frontends
from anweddol_actors.engine.settings import HostSettings
from anweddol_actors.journal import Journal

FULL = "Unavailable (The maximum amount of running containers is reached)"
HOST = "h"


@pytest.fixture
def front_ends(rsa, tmp_path, guest, pg_url):
    """Factory: a started front end ``name`` on the shared journal; each is stopped at
    teardown (if still running) and the host left with none of their domains."""
    made = []

    def factory(name: str, **overrides):
        folder = tmp_path / name
        folder.mkdir()
        running = stand_in_server(
            rsa,
            folder,
            free_range(),
            hosts=(HostSettings(name=HOST, libvirt_uri="test:///default", max_containers=1),),
            guest_port_range=(guest.port, guest.port),
            ready_timeout=10.0,
            database=pg_url,
            front_end=name,
            **{"front_end_lease": 1.5, **overrides},
        )
        made.append(running)
        return running.start()

    yield factory
    for running in made:
        if running.thread.is_alive():
            running.stop()
    with Journal(pg_url) as journal:
        left = journal.live_entities(kind="container", owner=None)
    assert left == [], "live containers left in the journal"


def client_of(running) -> Client:
    return Client(*running.address, timeout=30)


def stall(running) -> None:
    """The front end stops renewing its lease and hearing notifications, as a hung or
    killed one would (nothing is unregistered); the rest of it runs on."""
    stalled = running.engine._front_end
    stalled._stop.set()
    for thread in stalled._threads:
        thread.join(timeout=10)


def reasons(journal: Journal, entity_id: str) -> list[str]:
    return [
        (row["details"] or {}).get("reason", "")
        for row in journal.history(entity_id)
        if row["kind"] == "container"
    ]


def test_capacity_is_shared_and_a_destroy_at_the_other_front_end_ends_the_container(
    front_ends,
):
    one, two = front_ends("one"), front_ends("two")
    at_one, at_two = client_of(one), client_of(two)
    created = at_one.create()
    assert created["success"] is True, created
    uuid, token = created["data"]["container_uuid"], created["data"]["client_token"]
    port = created["data"]["container_listen_port"]
    journal = one.engine.journal
    assert journal.entity(uuid, kind="container")["owner"] == "one"

    # The host's one slot is one's: two refuses, and says so once its tick read it.
    refused = at_two.create()
    assert (refused["success"], refused["message"]) == (False, FULL)
    wait_for(lambda: at_two.stat()["data"]["available"] == 0, what="two's STAT to say 0")

    destroyed = at_two.destroy(uuid, token)
    assert destroyed["success"] is True, destroyed
    # The owner ends it: its registry lets go, its forwarder's port closes.
    wait_for(lambda: one.engine.registry.get(uuid).get() is None, what="one to end it")
    wait_for(lambda: refuses(port), what="one's forwarder to stop")
    row = journal.entity(uuid, kind="container")
    assert (row["state"], row["owner"]) == ("destroyed", "one")
    assert journal.entity(f"{uuid}.forwarder", kind="forwarder")["state"] == "destroyed"
    assert "DESTROY received by front end two" in reasons(journal, uuid)
    assert not journal.has_credentials(uuid)
    assert at_one.destroy(uuid, token)["message"] == "Bad authentication"

    # The slot is given back to every front end.
    again = at_two.create()
    assert again["success"] is True, again
    assert journal.entity(again["data"]["container_uuid"], kind="container")["owner"] == "two"
    assert at_one.create()["message"] == FULL
    assert at_two.destroy(again["data"]["container_uuid"], again["data"]["client_token"])["success"]


def test_a_front_end_that_stops_renewing_is_taken_over(front_ends):
    one, two = front_ends("one"), front_ends("two")
    created = client_of(one).create()
    assert created["success"] is True, created
    uuid = created["data"]["container_uuid"]
    journal = two.engine.journal
    hypervisor = two.engine.context.hosts.get(HOST).link.get()
    assert hypervisor.is_active(uuid)

    stall(one)

    reason = "front end one stopped renewing its lease"
    wait_for(
        lambda: journal.entity(uuid, kind="container")["state"] == "destroyed",
        timeout=20,
        what="two to take one over",
    )
    assert reason in reasons(journal, uuid)
    assert not hypervisor.is_active(uuid)
    assert not journal.has_credentials(uuid)
    # Every entity one owned is ended, its row gone; its capacity is two's to use.
    wait_for(
        lambda: "one" not in {row["name"] for row in journal.front_ends()},
        what="one's row to go",
    )
    assert journal.live_entities(owner="one") == []
    # one, still running, hears of its domain's end from libvirt and lets its container
    # go; its next tick finds the lease taken and registers again.
    wait_for(lambda: one.engine.registry.get(uuid).get() is None, what="one to let go")
    one.engine._front_end.tick()
    rows = {row["name"]: row for row in journal.front_ends()}
    assert rows["one"]["taken_by"] is None and not rows["one"]["expired"]
    created = client_of(two).create()
    assert created["success"] is True, created
    assert client_of(two).destroy(
        created["data"]["container_uuid"], created["data"]["client_token"]
    )["success"]


def test_a_destroy_the_owner_does_not_hear_destroys_the_domain_itself(front_ends, monkeypatch):
    monkeypatch.setattr(frontends, "OWNER_GRACE", 1.0)
    one, two = front_ends("one", front_end_lease=60), front_ends("two", front_end_lease=60)
    created = client_of(one).create()
    assert created["success"] is True, created
    uuid, token = created["data"]["container_uuid"], created["data"]["client_token"]
    hypervisor = two.engine.context.hosts.get(HOST).link.get()
    stall(one)  # deaf to notifications, its lease still valid for a minute

    destroyed = client_of(two).destroy(uuid, token)
    assert destroyed["success"] is True, destroyed
    assert not hypervisor.is_active(uuid)
    # one hears of it from libvirt instead, and ends its container there.
    journal = one.engine.journal
    wait_for(
        lambda: journal.entity(uuid, kind="container")["state"] == "destroyed",
        what="one to end it",
    )
    assert "domain stopped by itself" in reasons(journal, uuid)


def test_a_front_end_restarted_during_its_takeover_waits_for_it(front_ends, pg_url):
    # two is taking one over (its lease ran out; two has not finished), as a journal
    # shows it between two's take_over and the end of its work.
    with Journal(pg_url, front_end="two") as two, Journal(pg_url, front_end="one") as one:
        two.register_front_end("127.0.0.2:1", 60)
        one.register_front_end("127.0.0.1:1", 0.01)
        wait_for(lambda: two.take_over("one"), what="one's lease to run out")
        finish = threading.Timer(2.0, two.unregister_front_end, args=("one",))
        finish.start()
        try:
            restarted = front_ends("one", front_end_lease=10)  # refused, tried again
        finally:
            finish.join()
        rows = {row["name"]: row for row in restarted.engine.journal.front_ends()}
        assert rows["one"]["taken_by"] is None and not rows["one"]["expired"]


def test_a_front_end_that_dies_with_nothing_live_is_taken_over_too(front_ends, pg_url):
    two = front_ends("two")
    with Journal(pg_url, front_end="one") as one:
        one.register_front_end("127.0.0.1:1", 0.01)  # its lease runs out at once
        # Nothing of one's to end; its row goes all the same, so that it can come back.
        wait_for(
            lambda: "one" not in {row["name"] for row in two.engine.journal.front_ends()},
            what="two to take one over",
        )
        one.register_front_end("127.0.0.1:1", 30)
    rows = {row["name"]: row for row in two.engine.journal.front_ends()}
    assert rows["one"]["taken_by"] is None
