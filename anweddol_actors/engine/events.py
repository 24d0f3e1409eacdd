"""Event names, call contexts and the dispatch table of user event handlers.

The names and values are the seed's (seed/server-api.md); the façade re-exports them.
A handler is called as ``routine(context=..., data=...)`` on the thread that caused the
event: a client session for request work, the server's event thread for automatic actions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

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

Handler = Callable[..., Any]


class EventBus:
    """The table of user event handlers, safe to change while sessions fire events."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()

    def set(self, event: str, routine: Handler | None) -> None:
        if event not in ALL_EVENTS:
            raise RuntimeError(f"Unknown event: {event!r}")
        with self._lock:
            if routine is None:
                self._handlers.pop(event, None)
            else:
                self._handlers[event] = routine

    def get(self, event: str) -> Handler | None:
        with self._lock:
            return self._handlers.get(event)

    def fire(self, event: str, context: int, data: dict | None = None) -> Any:
        """Run the handler of ``event`` (if any) and return what it returned.

        Exceptions propagate: the caller decides whether they are runtime errors of a
        request (answered ``Internal error``) or of an automatic action (logged, counted).
        """
        if event not in ALL_EVENTS:
            raise RuntimeError(f"Unknown event: {event!r}")
        routine = self.get(event)
        if routine is None:
            return None
        return routine(context=context, data=dict(data or {}))
