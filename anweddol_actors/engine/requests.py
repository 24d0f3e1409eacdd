"""The built-in verbs: STAT, CREATE, DESTROY, and the teardown of a live container.

Each step of a CREATE asks the actor that owns the piece (container, endpoint shell,
forwarder) to do it; the actor journals the step's transition before it answers, and only
then does this code fire the seed's event for it, on the session's thread, in the seed's
order. A failure at any step unwinds the steps already done, in reverse.
"""

from __future__ import annotations

import logging
import secrets
import traceback
from typing import TYPE_CHECKING, Any

from anweddol_actors import __version__
from anweddol_actors.actors.registry import LiveContainer
from anweddol_actors.core.client import (
    RESPONSE_MSG_BAD_AUTH,
    RESPONSE_MSG_BAD_REQ,
    RESPONSE_MSG_INTERNAL_ERROR,
    RESPONSE_MSG_OK,
    RESPONSE_MSG_UNAVAILABLE,
)
from anweddol_actors.engine.events import (
    CONTEXT_ERROR,
    CONTEXT_NORMAL_PROCESS,
    EVENT_AUTHENTICATION_ERROR,
    EVENT_CONTAINER_CREATED,
    EVENT_CONTAINER_DOMAIN_STARTED,
    EVENT_CONTAINER_DOMAIN_STOPPED,
    EVENT_ENDPOINT_SHELL_CLOSED,
    EVENT_ENDPOINT_SHELL_CREATED,
    EVENT_ENDPOINT_SHELL_OPENED,
    EVENT_FORWARDER_CREATED,
    EVENT_FORWARDER_STARTED,
    EVENT_FORWARDER_STOPPED,
    EVENT_RUNTIME_ERROR,
)
from anweddol_actors.protocol.messages import make_response

if TYPE_CHECKING:
    from anweddol_actors.core.client import ClientInstance
    from anweddol_actors.engine.engine import Engine

log = logging.getLogger(__name__)

CLIENT_TOKEN_LENGTH = 255


def new_client_token() -> str:
    """255 characters of ``[0-9a-zA-Z-_]`` (PROTOCOL.md §3), from ``secrets``."""
    return secrets.token_urlsafe(192)[:CLIENT_TOKEN_LENGTH]


class HandleEnded(Exception):
    """A handler closed the client: the seed's signal that the handling ends here."""


def respond(
    client: ClientInstance | None,
    passive: bool,
    success: bool,
    message: str,
    data: dict | None = None,
    reason: str | None = None,
) -> dict | None:
    """Send the response to the client, or return it (passive mode, or no client)."""
    if client is not None and not passive:
        if not client.isClosed():
            client.sendResponse(success, message, data or {}, reason)
        return None
    return make_response(success, message, data or {}, reason)


def handle_stat(
    engine: Engine, client_instance: ClientInstance | None = None, passive: bool = False, **_: Any
) -> dict | None:
    available = engine.available_slots()
    data = {
        "version": __version__,
        "uptime": engine.uptime(),
        "available": "nolimit" if available is None else available,
    }
    return respond(client_instance, passive, True, RESPONSE_MSG_OK, data)


def handle_destroy(
    engine: Engine,
    client_instance: ClientInstance | None = None,
    passive: bool = False,
    credentials_dict: dict | None = None,
    **kwargs: Any,
) -> dict | None:
    if credentials_dict is None and client_instance is not None:
        request = client_instance.getStoredRequest() or {}
        credentials_dict = request.get("parameters", {})
    credentials_dict = credentials_dict or {}
    container_uuid = credentials_dict.get("container_uuid")
    client_token = credentials_dict.get("client_token")
    if not isinstance(container_uuid, str) or not isinstance(client_token, str):
        return respond(
            client_instance,
            passive,
            False,
            RESPONSE_MSG_BAD_REQ,
            reason="container_uuid and client_token are required",
        )
    # Both must match, compared in constant time over hashes (PROTOCOL.md §4: the seed
    # accepted any token).
    if not engine.journal.verify_credentials(container_uuid, client_token):
        engine.fire(
            EVENT_AUTHENTICATION_ERROR,
            CONTEXT_NORMAL_PROCESS,
            {"client_instance": client_instance, **kwargs},
        )
        return respond(client_instance, passive, False, RESPONSE_MSG_BAD_AUTH)
    entry = engine.registry.pop(container_uuid).get()
    try:
        if entry is not None:
            teardown(engine, entry, CONTEXT_NORMAL_PROCESS, client_instance, **kwargs)
    finally:
        engine.journal.delete_credentials(container_uuid)
    return respond(client_instance, passive, True, RESPONSE_MSG_OK)


def teardown(
    engine: Engine,
    entry: LiveContainer,
    context: int,
    client_instance: ClientInstance | None = None,
    **kwargs: Any,
) -> None:
    """Stop a stored container's forwarder and domain; fire the stop events with ``context``."""
    extra = {"client_instance": client_instance} if client_instance is not None else {}
    extra.update(kwargs)
    try:
        if entry.forwarder.stop_forwarding(context).get():
            engine.fire(
                EVENT_FORWARDER_STOPPED,
                context,
                {"forwarder_instance": entry.forwarder_instance, **extra},
            )
        if entry.container.stop_domain(context).get():
            engine.fire(
                EVENT_CONTAINER_DOMAIN_STOPPED,
                context,
                {"container_instance": entry.container_instance, **extra},
            )
    finally:
        engine.journal.delete_credentials(entry.uuid)
        entry.forwarder_instance.stop_actor()
        entry.container_instance.stop_actor()


class _CreateSteps:
    """What a CREATE has done so far, to be undone in reverse if a later step fails."""

    def __init__(self) -> None:
        self.container = None
        self.shell = None
        self.forwarder = None
        self.credentials_stored = False


def handle_create(
    engine: Engine, client_instance: ClientInstance | None = None, passive: bool = False, **kwargs
) -> dict | None:
    if not engine.registry.reserve_slot().get():
        return respond(
            client_instance,
            passive,
            False,
            RESPONSE_MSG_UNAVAILABLE,
            reason="The maximum amount of running containers is reached",
        )
    done = _CreateSteps()
    base = {"client_instance": client_instance, **kwargs}

    def fire(event: str, data: dict) -> None:
        engine.fire(event, CONTEXT_NORMAL_PROCESS, {**base, **data})
        if client_instance is not None and client_instance.isClosed():
            raise HandleEnded(event)

    try:
        response_data = _create(engine, done, fire)
    except HandleEnded:
        _unwind(engine, done, base)
        return None
    except Exception as exc:
        _unwind(engine, done, base)
        engine.count_runtime_error()
        log.warning("CREATE failed: %s", exc)
        engine.fire(
            EVENT_RUNTIME_ERROR,
            CONTEXT_ERROR,
            {
                "exception_object": exc,
                "traceback": "".join(traceback.format_exception(exc)),
                **base,
            },
        )
        return respond(client_instance, passive, False, RESPONSE_MSG_INTERNAL_ERROR)
    return respond(client_instance, passive, True, RESPONSE_MSG_OK, response_data)


def _create(engine: Engine, done: _CreateSteps, fire) -> dict:
    settings = engine.settings
    container = engine.new_container()
    done.container = container
    fire(EVENT_CONTAINER_CREATED, {"container_instance": container})

    container.actor.start_domain(CONTEXT_NORMAL_PROCESS).get()
    fire(EVENT_CONTAINER_DOMAIN_STARTED, {"container_instance": container})

    host, port = container.wait_ready(settings.ready_timeout)
    shell = container.createEndpointShell(
        settings.endpoint_username,
        settings.endpoint_password,
        settings.endpoint_listen_port,
        open_shell=False,
    )
    done.shell = shell
    fire(EVENT_ENDPOINT_SHELL_CREATED, {"endpoint_shell_instance": shell})

    shell.openShell()
    fire(EVENT_ENDPOINT_SHELL_OPENED, {"endpoint_shell_instance": shell})

    username, password = shell.generateClientSSHCredentials(settings.password_length)
    shell.administrateContainer()
    container.actor.mark_administered(username, CONTEXT_NORMAL_PROCESS).get()

    shell.closeShell()
    shell.stop_actor()
    done.shell = None  # closed and journalled: nothing left to undo
    fire(EVENT_ENDPOINT_SHELL_CLOSED, {"endpoint_shell_instance": shell})

    forwarder = engine.new_forwarder(container.getUUID(), host, port)
    done.forwarder = forwarder
    listen_port = forwarder.actor.reserve().get()
    fire(EVENT_FORWARDER_CREATED, {"forwarder_instance": forwarder})

    forwarder.actor.start_forwarding(CONTEXT_NORMAL_PROCESS).get()
    fire(EVENT_FORWARDER_STARTED, {"forwarder_instance": forwarder})

    if engine.stopping:
        raise RuntimeError("the server is stopping")
    token = new_client_token()
    engine.journal.store_credentials(container.getUUID(), token)
    done.credentials_stored = True
    container.actor.mark_serving(listen_port, CONTEXT_NORMAL_PROCESS).get()
    engine.registry.add(
        LiveContainer(
            uuid=container.getUUID(),
            container=container.actor,
            forwarder=forwarder.actor,
            container_instance=container,
            forwarder_instance=forwarder,
        )
    ).get()
    return {
        "container_uuid": container.getUUID(),
        "client_token": token,
        "container_iso_sha256": container.makeISOFileChecksum(),
        "container_username": username,
        "container_password": password,
        "container_listen_port": listen_port,
    }


def _unwind(engine: Engine, done: _CreateSteps, base: dict) -> None:
    """Undo a failed CREATE in reverse; every undo is journalled by its actor."""
    try:
        if done.credentials_stored:
            engine.journal.delete_credentials(done.container.getUUID())
        # (façade, the actor's undo, the event it reports, the event's data key)
        undos = (
            (done.forwarder, "stop_forwarding", EVENT_FORWARDER_STOPPED, "forwarder_instance"),
            (done.shell, "close", EVENT_ENDPOINT_SHELL_CLOSED, "endpoint_shell_instance"),
            (done.container, "stop_domain", EVENT_CONTAINER_DOMAIN_STOPPED, "container_instance"),
        )
        for instance, undo, event, key in undos:
            if instance is None:
                continue
            # True when the step was live (running, open, started): only then did
            # something stop that a handler was told had started.
            if getattr(instance.actor, undo)(CONTEXT_ERROR, "create failed").get():
                _fire_quietly(engine, event, {**base, key: instance})
            instance.stop_actor()
    finally:
        engine.registry.release_slot()


def _fire_quietly(engine: Engine, event: str, data: dict) -> None:
    try:
        engine.fire(event, CONTEXT_ERROR, data)
    except Exception:
        log.exception("%s handler raised while unwinding a CREATE", event)
