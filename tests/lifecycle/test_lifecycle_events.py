"""The seed events and the one table of the transitions that may back them."""

import pytest

from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import (
    ALL_EVENTS,
    EVENTS_OF,
    SPECS,
    Lifecycle,
    Transition,
    backs,
    transitions_behind,
)
from anweddol_actors.lifecycle import events as lifecycle_events
from anweddol_actors.lifecycle.events import _validate_events

# The seed's nineteen events (seed/server-api.md), written out independently of events.py.
SEED_EVENTS = {
    "on_container_created",
    "on_container_domain_started",
    "on_container_domain_stopped",
    "on_forwarder_created",
    "on_forwarder_started",
    "on_forwarder_stopped",
    "on_endpoint_shell_created",
    "on_endpoint_shell_opened",
    "on_endpoint_shell_closed",
    "on_server_started",
    "on_server_stopped",
    "on_client_initialized",
    "on_client_closed",
    "on_connection_accepted",
    "on_request",
    "on_authentication_error",
    "on_runtime_error",
    "on_malformed_request",
    "on_unhandled_verb",
}


def test_the_nineteen_seed_events_and_values():
    assert len(ALL_EVENTS) == 19 and set(ALL_EVENTS) == SEED_EVENTS
    names = {value for name, value in vars(lifecycle_events).items() if name.startswith("EVENT_")}
    assert names == SEED_EVENTS
    contexts = (
        lifecycle_events.CONTEXT_NORMAL_PROCESS,
        lifecycle_events.CONTEXT_AUTOMATIC_ACTION,
        lifecycle_events.CONTEXT_DEFERRED_CALL,
        lifecycle_events.CONTEXT_HANDLE_END,
        lifecycle_events.CONTEXT_ERROR,
    )
    assert contexts == (20, 21, 22, 23, 24)
    assert lifecycle_events.CLIENT_CLOSED_BY_HANDLER == -1


def test_every_event_is_backed_by_a_transition():
    for event in ALL_EVENTS:
        behind = transitions_behind(event)
        assert behind, event
        assert all(backs(step, event) for step in behind)
    assert {event for backed in EVENTS_OF.values() for event in backed} == SEED_EVENTS


def test_every_key_is_a_step_of_its_machine():
    for kind, trigger in EVENTS_OF:
        spec = SPECS[kind]
        assert trigger == spec.create_trigger or trigger in spec.edge_triggers, (kind, trigger)


def test_the_table_as_specified():
    assert transitions_behind("on_runtime_error") == tuple((kind, "fail") for kind in SPECS)
    assert transitions_behind("on_client_closed") == (("session", "close"), ("session", "fail"))
    assert transitions_behind("on_container_created") == (("container", "create"),)
    assert transitions_behind("on_authentication_error") == (("session", "deny"),)
    assert backs(("session", "malformed"), "on_malformed_request")
    assert backs(("session", "unhandled"), "on_unhandled_verb")
    assert not backs(("session", "destroy"), "on_client_closed")
    assert not backs(("server", "create"), "on_server_started")
    # The table is read-only: events are changed here, in the source, not at run time.
    with pytest.raises(TypeError):
        EVENTS_OF[("server", "destroy")] = ("on_server_stopped",)


def test_backs_takes_a_fired_transition():
    with Journal(":memory:") as journal:
        container = Lifecycle("container", "c", journal)
        created = container.create()
        started = container.fire("start")
    assert backs(created, "on_container_created")
    assert backs(started, "on_container_domain_started")
    assert not backs(started, "on_container_created")
    failed = Transition("container", "c", "fail", "stopped", "failed")
    assert backs(failed, "on_runtime_error") and backs(failed, "on_container_domain_stopped")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: backs(("session", "start"), "on_requests"), "unknown event"),
        (lambda: transitions_behind("on_server_start"), "unknown event"),
        (lambda: backs(("session", "open"), "on_request"), "no step"),
        (lambda: backs(("vm", "start"), "on_request"), "no step"),
    ],
)
def test_typos_are_refused_not_answered_false(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({("sesion", "start"): ("on_connection_accepted",)}, "unknown kind"),
        ({("session", "strat"): ("on_connection_accepted",)}, "no trigger 'strat'"),
        ({("server", "start"): ("on_server_startd",)}, "unknown event"),
        ({("server", "start"): "on_server_started"}, "non-empty tuple"),
        ({("server", "start"): ()}, "non-empty tuple"),
        ({("server", "start"): ("on_server_started",) * 2}, "listed twice"),
    ],
)
def test_a_typo_in_the_table_is_refused(change, message):
    with pytest.raises(ValueError, match=message):
        _validate_events({**EVENTS_OF, **change})


def test_an_unbacked_event_is_refused():
    table = {key: backed for key, backed in EVENTS_OF.items() if key != ("session", "deny")}
    with pytest.raises(ValueError, match="on_authentication_error"):
        _validate_events(table)
    assert _validate_events(EVENTS_OF) == EVENTS_OF
