"""Handlers that start the domain themselves in ``on_container_created`` (as the original's
own command-line server does), on libvirt's test driver: its domains 'start' but no guest
ever answers SSH, so these CREATEs fail after the start; what is checked is who started
the domain, what the journal holds, and that the unwind leaves nothing. The successful
CREATE, with a real guest, is in tests/e2e/test_e2e_seed_handlers.py."""

from __future__ import annotations

from serverharness import record_events, wait_for

from anweddol_actors.client import Client
from anweddol_actors.core import server as seed


def names(seen) -> list[str]:
    return [event for event, _, _ in seen]


def container_rows(running) -> list[dict]:
    return running.server.engine.journal.history(kind="container")


def assert_nothing_left(running) -> None:
    engine = running.server.engine
    assert engine.context.hypervisors.get().list_marked() == []
    assert engine.journal.live_entities(kind="container") == []
    assert engine.registry.count().get() == 0
    assert engine.registry.pending_count().get() == 0


def test_a_handler_start_is_the_creates_only_start(make_server):
    running = make_server(start=False, ready_timeout=0.5)
    seen = record_events(running.server)
    running_before_return = []

    @running.server.on_container_created
    def start_it(context, data):
        container = data["container_instance"]
        container.startDomain(wait_available=False)
        running_before_return.append(container.isDomainRunning())

    running.start()
    response = Client(*running.address, timeout=20).create()
    # No guest answers on the test driver: the CREATE fails at the SSH wait, after the
    # start, not on a second start of a running domain.
    assert response["message"] == "Internal error"
    assert running_before_return == [True]
    wait_for(lambda: "on_client_closed" in names(seen))
    rows = container_rows(running)
    assert [row["trigger"] for row in rows] == ["create", "start", "fail", "destroy"]
    assert rows[1]["context"] == seed.CONTEXT_NORMAL_PROCESS
    assert "no SSH banner" in str(rows[2]["details"])
    # (start_it replaced the recorder of on_container_created.) No domain_started: it
    # stands for the server's own start, as in the original.
    events = [n for n in names(seen) if n.startswith("on_container")]
    assert events == ["on_container_domain_stopped"]
    assert_nothing_left(running)


def test_a_handler_whose_start_times_out_fails_the_create_cleanly(make_server):
    running = make_server()

    @running.server.on_container_created
    def start_it(context, data):
        data["container_instance"].startDomain(wait_max_tryout=1)

    response = Client(*running.address, timeout=30).create()
    assert response["message"] == "Internal error"
    wait_for(lambda: running.server.engine.registry.pending_count().get() == 0)
    rows = container_rows(running)
    assert [row["trigger"] for row in rows] == ["create", "start", "fail", "destroy"]
    assert_nothing_left(running)


def test_a_handler_that_starts_then_stops_the_domain(make_server):
    running = make_server()

    @running.server.on_container_created
    def start_and_stop(context, data):
        container = data["container_instance"]
        container.startDomain(wait_available=False)
        container.stopDomain()

    response = Client(*running.address, timeout=20).create()
    assert response["message"] == "Internal error"
    wait_for(lambda: running.server.engine.registry.pending_count().get() == 0)
    rows = container_rows(running)
    assert [row["trigger"] for row in rows] == ["create", "start", "stop", "destroy"]
    assert_nothing_left(running)
