"""The parts of the metrics on their own: the forwarders' totals over real relays (kept
monotonic as forwarders end), containers by state from a real journal file, the
journal's hook, a CREATE's clock, and the no-op stand-in's likeness."""

from __future__ import annotations

import inspect
import socket

import pytest
from promtext import samples, value
from serverharness import Echo, wait_for

from anweddol_actors.actors.forwarder import ForwarderActor
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle
from anweddol_actors.metrics import (
    CONTAINER_STATES,
    CREATE_PHASES,
    Metrics,
    NoMetrics,
    containers_by_state,
)


@pytest.fixture
def echo():
    server = Echo()
    yield server
    server.close()


@pytest.fixture
def journal(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite3")
    yield journal
    journal.close()


def free_range(size: int = 20) -> tuple[int, int]:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        base = probe.getsockname()[1]
    return (base, min(65535, base + size))


def start_forwarder(journal, echo, name: str, metrics: Metrics, **limits):
    proxy = ForwarderActor.start(
        name,
        journal,
        free_range(),
        "127.0.0.1",
        ("127.0.0.1", echo.port),
        relays=metrics.forwarders,
        **limits,
    ).proxy()
    proxy.create(20).get()
    proxy.start_forwarding(20).get()
    return proxy, proxy.describe().get()["port"]


def roundtrip(port: int, payload: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        received += sock.recv(65536)
    assert received == payload
    return sock


def forwarder_samples(metrics: Metrics) -> dict:
    found = samples(metrics.render().decode())
    return {
        "in": value(found, "anweddol_forwarder_bytes_total", direction="client_to_guest"),
        "out": value(found, "anweddol_forwarder_bytes_total", direction="guest_to_client"),
        "accepted": value(found, "anweddol_forwarder_connections_total"),
        "refused": value(found, "anweddol_forwarder_connections_refused_total"),
        "open": value(found, "anweddol_forwarder_connections_open"),
        "forwarders": value(found, "anweddol_forwarders"),
    }


def test_forwarder_totals_stay_monotonic_when_forwarders_end(journal, echo):
    metrics = Metrics()
    first, first_port = start_forwarder(journal, echo, "a.forwarder", metrics)
    second = None
    try:
        roundtrip(first_port, b"x" * 1000).close()
        wait_for(lambda: forwarder_samples(metrics)["out"] == 1000)
        first.stop_forwarding(20).get()
        ended = forwarder_samples(metrics)
        # The ended relay's counts are folded in: nothing goes backwards.
        assert ended == {
            "in": 1000,
            "out": 1000,
            "accepted": 1,
            "refused": 0,
            "open": 0,
            "forwarders": 0,
        }
        second, second_port = start_forwarder(
            journal, echo, "b.forwarder", metrics, max_connections=1
        )
        held = roundtrip(second_port, b"y" * 24)
        with held:
            wait_for(lambda: forwarder_samples(metrics)["out"] == 1024)
            # Past max_connections: accepted by the kernel, closed at once by the relay.
            # The reset may come during the connect already, or at the first read.
            with pytest.raises(ConnectionResetError):
                with socket.create_connection(("127.0.0.1", second_port), timeout=5) as extra:
                    extra.recv(1)
            wait_for(lambda: forwarder_samples(metrics)["refused"] == 1)
            live = forwarder_samples(metrics)
            assert live["open"] == 1
            assert live["accepted"] == 2
            assert live["forwarders"] == 1
        second.stop_forwarding(20).get()
        final = forwarder_samples(metrics)
        assert final == {
            "in": 1024,
            "out": 1024,
            "accepted": 2,
            "refused": 1,
            "open": 0,
            "forwarders": 0,
        }
    finally:
        first.actor_ref.stop()
        if second is not None:
            second.actor_ref.stop()


def test_containers_by_state_from_the_journal(journal):
    metrics = Metrics()
    metrics.watch(verbs={}, containers=lambda: containers_by_state(journal))
    booting = Lifecycle("container", "booting", journal)
    booting.create()
    booting.fire("start")
    serving = Lifecycle("container", "serving", journal)
    for trigger in ("create", "start", "administer", "serve"):
        serving.fire(trigger)
    ended = Lifecycle("container", "ended", journal)
    for trigger in ("create", "start", "stop", "destroy"):
        ended.fire(trigger)
    lost = Lifecycle("container", "lost", journal)
    for trigger in ("create", "start", "administer", "serve", "lose"):
        lost.fire(trigger)
    found = samples(metrics.render().decode())
    counts = {state: value(found, "anweddol_containers", state=state) for state in CONTAINER_STATES}
    assert counts == {
        "created": 0,
        "started_booting": 1,
        "started_administered": 0,
        "started_pooled": 0,
        "started_serving": 1,
        "stopped": 0,
        "failed": 0,
        "lost": 1,
    }
    serving.fire("stop")
    serving.fire("destroy")
    found = samples(metrics.render().decode())
    assert value(found, "anweddol_containers", state="started_serving") == 0


def test_a_family_that_cannot_be_read_is_left_out_not_the_page(journal):
    metrics = Metrics()
    metrics.watch(verbs={}, containers=lambda: containers_by_state(journal), uptime=lambda: 3.0)
    journal.close()
    found = samples(metrics.render().decode())
    assert not any(name == "anweddol_containers" for name, _labels in found)
    assert value(found, "anweddol_uptime_seconds") == 3.0


def test_the_journal_tells_committed_rows_deferred_ones_when_written(journal):
    seen: list[tuple[str, str]] = []
    journal.on_recorded = lambda rows: seen.extend((row["kind"], row["trigger"]) for row in rows)
    session = Lifecycle("session", "s1", journal, deferred=True)
    session.fire("start")
    session.fire("handshake")
    assert seen == []  # held in memory, not journalled yet: not counted yet
    session.make_durable()
    session.fire("request")
    assert seen == [("session", "start"), ("session", "handshake"), ("session", "request")]


def test_a_raising_observer_does_not_undo_a_durable_transition(journal):
    def broken(rows):
        raise RuntimeError("observer bug")

    journal.on_recorded = broken
    container = Lifecycle("container", "c1", journal)
    assert container.create().dest == "created"
    assert journal.entity("c1")["state"] == "created"


def test_a_create_clock_observes_its_phases_once_done():
    metrics = Metrics()
    clock = metrics.create_clock()
    for phase in CREATE_PHASES:
        clock.lap(phase)
    found = samples(metrics.render().decode())
    assert value(found, "anweddol_create_duration_seconds_count") == 0  # not delivered yet
    clock.done()
    found = samples(metrics.render().decode())
    assert value(found, "anweddol_create_duration_seconds_count") == 1
    total = value(found, "anweddol_create_duration_seconds_sum")
    laps = 0.0
    for phase in CREATE_PHASES:
        assert value(found, "anweddol_create_phase_duration_seconds_count", phase=phase) == 1
        laps += value(found, "anweddol_create_phase_duration_seconds_sum", phase=phase)
    assert laps == pytest.approx(total)


def test_no_metrics_has_every_method_of_metrics():
    def public(cls) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    real, noop = public(Metrics), public(NoMetrics)
    assert set(real) == set(noop)
    for name in ("request", "transitions_recorded", "runtime_error", "create_observed"):
        assert real[name].parameters.keys() == noop[name].parameters.keys(), name
    assert hasattr(NoMetrics().forwarders, "started") and hasattr(NoMetrics().forwarders, "ended")
