"""The seed's events, and which lifecycle transitions may back each one.

The names and values are the seed's (seed/server-api.md). They live here, next to the
machines, because an event is never free-standing: it is raised because an entity moved,
and :data:`EVENTS_OF` is the one table saying which moves may be the occasion of which
events. A move may back several events where the seed tells them apart by circumstance
(a failing session also closes its client), and a move may back none (``destroy``).

The table is checked against :data:`~anweddol_actors.lifecycle.definitions.SPECS` at
import, so that a typo fails every test at once rather than silently never raising an
event.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from anweddol_actors.lifecycle.definitions import SPECS, MachineSpec
from anweddol_actors.lifecycle.machine import Transition

EVENT_CONTAINER_CREATED = "on_container_created"
EVENT_CONTAINER_DOMAIN_STARTED = "on_container_domain_started"
EVENT_CONTAINER_DOMAIN_STOPPED = "on_container_domain_stopped"
EVENT_FORWARDER_CREATED = "on_forwarder_created"
EVENT_FORWARDER_STARTED = "on_forwarder_started"
EVENT_FORWARDER_STOPPED = "on_forwarder_stopped"
EVENT_ENDPOINT_SHELL_CREATED = "on_endpoint_shell_created"
EVENT_ENDPOINT_SHELL_OPENED = "on_endpoint_shell_opened"
EVENT_ENDPOINT_SHELL_CLOSED = "on_endpoint_shell_closed"
EVENT_SERVER_STARTED = "on_server_started"
EVENT_SERVER_STOPPED = "on_server_stopped"
EVENT_CLIENT_INITIALIZED = "on_client_initialized"
EVENT_CLIENT_CLOSED = "on_client_closed"
EVENT_CONNECTION_ACCEPTED = "on_connection_accepted"
EVENT_REQUEST = "on_request"
EVENT_AUTHENTICATION_ERROR = "on_authentication_error"
EVENT_RUNTIME_ERROR = "on_runtime_error"
EVENT_MALFORMED_REQUEST = "on_malformed_request"
EVENT_UNHANDLED_VERB = "on_unhandled_verb"

ALL_EVENTS = (
    EVENT_CONTAINER_CREATED,
    EVENT_CONTAINER_DOMAIN_STARTED,
    EVENT_CONTAINER_DOMAIN_STOPPED,
    EVENT_FORWARDER_CREATED,
    EVENT_FORWARDER_STARTED,
    EVENT_FORWARDER_STOPPED,
    EVENT_ENDPOINT_SHELL_CREATED,
    EVENT_ENDPOINT_SHELL_OPENED,
    EVENT_ENDPOINT_SHELL_CLOSED,
    EVENT_SERVER_STARTED,
    EVENT_SERVER_STOPPED,
    EVENT_CLIENT_INITIALIZED,
    EVENT_CLIENT_CLOSED,
    EVENT_CONNECTION_ACCEPTED,
    EVENT_REQUEST,
    EVENT_AUTHENTICATION_ERROR,
    EVENT_RUNTIME_ERROR,
    EVENT_MALFORMED_REQUEST,
    EVENT_UNHANDLED_VERB,
)

CONTEXT_NORMAL_PROCESS = 20
CONTEXT_AUTOMATIC_ACTION = 21
CONTEXT_DEFERRED_CALL = 22
CONTEXT_HANDLE_END = 23
CONTEXT_ERROR = 24

# triggerEvent's answer when the handler closed the client: the seed's "handle ended".
CLIENT_CLOSED_BY_HANDLER = -1

TransitionKey = tuple[str, str]
"""``(kind, trigger)``: a step of one machine, the create step included."""


def _validate_events(
    table: Mapping[TransitionKey, tuple[str, ...]],
    specs: Mapping[str, MachineSpec] = SPECS,
    events: tuple[str, ...] = ALL_EVENTS,
) -> MappingProxyType[TransitionKey, tuple[str, ...]]:
    """*table*, read-only, once every key is a step and every event is backed."""
    for (kind, trigger), backed in table.items():
        spec = specs.get(kind)
        if spec is None:
            raise ValueError(f"events of {kind}.{trigger}: unknown kind {kind!r}")
        if trigger not in spec.triggers:
            raise ValueError(f"events of {kind}.{trigger}: {kind} has no trigger {trigger!r}")
        # A bare string would be read as a tuple of letters.
        if not isinstance(backed, tuple) or not backed:
            raise ValueError(f"events of {kind}.{trigger}: not a non-empty tuple of events")
        unknown = [event for event in backed if event not in events]
        if unknown:
            raise ValueError(f"events of {kind}.{trigger}: unknown event(s) {unknown}")
        if len(set(backed)) != len(backed):
            raise ValueError(f"events of {kind}.{trigger}: an event is listed twice")
    # An event no move backs could never be raised by a machine-driven server.
    orphans = [event for event in events if not any(event in b for b in table.values())]
    if orphans:
        raise ValueError(f"no transition backs the event(s) {orphans}")
    return MappingProxyType(dict(table))


EVENTS_OF: Mapping[TransitionKey, tuple[str, ...]] = _validate_events(
    {
        ("server", "start"): (EVENT_SERVER_STARTED,),
        ("server", "stop"): (EVENT_SERVER_STOPPED,),
        ("server", "fail"): (EVENT_RUNTIME_ERROR,),
        ("session", "start"): (EVENT_CONNECTION_ACCEPTED,),
        ("session", "handshake"): (EVENT_CLIENT_INITIALIZED,),
        ("session", "request"): (EVENT_REQUEST,),
        ("session", "malformed"): (EVENT_MALFORMED_REQUEST,),
        ("session", "unhandled"): (EVENT_UNHANDLED_VERB,),
        ("session", "deny"): (EVENT_AUTHENTICATION_ERROR,),
        ("session", "close"): (EVENT_CLIENT_CLOSED,),
        ("session", "fail"): (EVENT_RUNTIME_ERROR, EVENT_CLIENT_CLOSED),
        ("container", "create"): (EVENT_CONTAINER_CREATED,),
        ("container", "start"): (EVENT_CONTAINER_DOMAIN_STARTED,),
        ("container", "stop"): (EVENT_CONTAINER_DOMAIN_STOPPED,),
        ("container", "fail"): (EVENT_RUNTIME_ERROR, EVENT_CONTAINER_DOMAIN_STOPPED),
        # Its host is away: for the server the container has ended, as if its domain
        # stopped (what handlers that count or bill containers must hear). Not a runtime
        # error: nothing of the server failed, and the loss is logged (engine/hostloss.py).
        ("container", "lose"): (EVENT_CONTAINER_DOMAIN_STOPPED,),
        ("endpoint_shell", "create"): (EVENT_ENDPOINT_SHELL_CREATED,),
        ("endpoint_shell", "open"): (EVENT_ENDPOINT_SHELL_OPENED,),
        ("endpoint_shell", "close"): (EVENT_ENDPOINT_SHELL_CLOSED,),
        ("endpoint_shell", "fail"): (EVENT_RUNTIME_ERROR, EVENT_ENDPOINT_SHELL_CLOSED),
        ("forwarder", "create"): (EVENT_FORWARDER_CREATED,),
        ("forwarder", "start"): (EVENT_FORWARDER_STARTED,),
        ("forwarder", "stop"): (EVENT_FORWARDER_STOPPED,),
        ("forwarder", "fail"): (EVENT_RUNTIME_ERROR, EVENT_FORWARDER_STOPPED),
    }
)
"""``(kind, trigger) -> events`` that move may back; a step absent here backs none."""

_BEHIND: Mapping[str, tuple[TransitionKey, ...]] = MappingProxyType(
    {
        event: tuple(key for key, backed in EVENTS_OF.items() if event in backed)
        for event in ALL_EVENTS
    }
)


def _check_event(event: str) -> None:
    if event not in _BEHIND:
        raise ValueError(f"unknown event {event!r}")


def _key(step: Transition | TransitionKey) -> TransitionKey:
    if isinstance(step, Transition):
        return (step.kind, step.trigger)
    kind, trigger = step
    spec = SPECS.get(kind)
    # A misspelt step would otherwise just back nothing, and the event never be raised.
    if spec is None or trigger not in spec.triggers:
        raise ValueError(f"{kind}.{trigger} is no step of any machine")
    return (kind, trigger)


def backs(step: Transition | TransitionKey, event: str) -> bool:
    """True when *step* (a fired Transition, or ``(kind, trigger)``) may back *event*.

    Raises ValueError for an unknown event or step, rather than answer False to a typo.
    """
    _check_event(event)
    return event in EVENTS_OF.get(_key(step), ())


def transitions_behind(event: str) -> tuple[TransitionKey, ...]:
    """The ``(kind, trigger)`` steps that may back *event*, in table order."""
    _check_event(event)
    return _BEHIND[event]
