"""The built-in verbs STAT and DESTROY, the response helper, and the teardown of a live
container (DESTROY, the reaper, lifetimes, the administrator's ``containers destroy`` and
the server's stop all end one this way; ``end_live`` is the reaper's and the admin's way in).

CREATE has its own module (``create.py``): it is the one flow with many steps to undo.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from anweddol_actors import __version__
from anweddol_actors.actors.base import one_line
from anweddol_actors.actors.registry import LiveContainer
from anweddol_actors.engine.context import EngineContext, Request
from anweddol_actors.engine.entities import stop_actor
from anweddol_actors.engine.frontends import destroy_elsewhere, owner_of_container
from anweddol_actors.engine.pause import pause
from anweddol_actors.lifecycle import Transition
from anweddol_actors.lifecycle.events import (
    CONTEXT_NORMAL_PROCESS,
    EVENT_AUTHENTICATION_ERROR,
    EVENT_CONTAINER_DOMAIN_STOPPED,
    EVENT_ENDPOINT_SHELL_CLOSED,
    EVENT_FORWARDER_STOPPED,
)
from anweddol_actors.protocol.messages import (
    RESPONSE_MSG_BAD_AUTH,
    RESPONSE_MSG_BAD_REQ,
    RESPONSE_MSG_OK,
    RESPONSE_MSG_UNAVAILABLE,
    make_response,
)

log = logging.getLogger(__name__)

CLIENT_TOKEN_LENGTH = 255
# The reason of the ``Unavailable`` answer to a CREATE or DESTROY while libvirt is
# unreachable (or the start's reconciliation has not run yet).
HYPERVISOR_UNREACHABLE = "hypervisor unreachable"


def new_client_token() -> str:
    """255 characters of ``[0-9a-zA-Z-_]`` (PROTOCOL.md §3), from ``secrets``."""
    return secrets.token_urlsafe(192)[:CLIENT_TOKEN_LENGTH]


def respond(
    request: Request,
    success: bool,
    message: str,
    data: dict | None = None,
    reason: str | None = None,
) -> dict | None:
    """Send the response to the client, or return it (passive mode, or no client).

    Sending raises when the client is gone: the caller decides what an undelivered
    response means (for a CREATE: the container is unwound).
    """
    channel = request.channel
    if channel is not None and not request.passive:
        if not channel.closed:
            channel.send_response(success, message, data or {}, reason)
        return None
    return make_response(success, message, data or {}, reason)


def stat(request: Request) -> dict | None:
    context = request.context
    available = context.available_containers()
    data = {
        "version": __version__,
        "uptime": context.uptime(),
        "available": "nolimit" if available is None else available,
    }
    return respond(request, True, RESPONSE_MSG_OK, data)


def destroy(request: Request) -> dict | None:
    context = request.context
    parameters = request.parameters
    if parameters is None and request.channel is not None:
        parameters = (request.channel.stored_request or {}).get("parameters", {})
    parameters = parameters or {}
    container_uuid = parameters.get("container_uuid")
    client_token = parameters.get("client_token")
    if not isinstance(container_uuid, str) or not isinstance(client_token, str):
        return respond(
            request,
            False,
            RESPONSE_MSG_BAD_REQ,
            reason="container_uuid and client_token are required",
        )
    # Both must match, compared in constant time over hashes (PROTOCOL.md §4: the seed
    # accepted any token).
    if not context.journal.verify_credentials(container_uuid, client_token):
        transition = request.session.fire(
            "deny", context=CONTEXT_NORMAL_PROCESS, details={"verb": "DESTROY"}
        )
        context.dispatch.emit(
            transition, EVENT_AUTHENTICATION_ERROR, CONTEXT_NORMAL_PROCESS, request.base_data
        )
        return respond(request, False, RESPONSE_MSG_BAD_AUTH)
    if not context.hypervisor_ready(_host_of(context, container_uuid)):
        # Nothing is touched: the credentials and the container stay, the client retries.
        return respond(request, False, RESPONSE_MSG_UNAVAILABLE, reason=HYPERVISOR_UNREACHABLE)
    pause(context.settings, "destroy:authenticated")
    # The token stops working first: whatever happens to the teardown, it cannot be reused.
    # An outage that begins past this point leaves the container claimed and its domain
    # "stuck": the reaper destroys it once libvirt answers again.
    context.journal.delete_credentials(container_uuid)
    pause(context.settings, "destroy:credentials_deleted")
    entry = context.registry.claim(container_uuid).get()
    if entry is not None:
        teardown(context, entry, CONTEXT_NORMAL_PROCESS, request.base_data)
    else:
        elsewhere = owner_of_container(context, container_uuid)
        if elsewhere is not None:
            destroy_elsewhere(context, elsewhere)
    response = respond(request, True, RESPONSE_MSG_OK)
    pause(context.settings, "destroy:response_sent")
    return response


def _host_of(context: EngineContext, container_uuid: str) -> str | None:
    """The host a live container runs on, ours or another front end's (None when it is
    not live: any host will do, the teardown has nothing to ask libvirt)."""
    entry = context.registry.get(container_uuid).get()
    if entry is not None:
        return entry.host
    elsewhere = owner_of_container(context, container_uuid)
    return None if elsewhere is None else context.hosts.name_in(elsewhere["data"])


# The undo of each piece of a container, in the order they are ended: (the data key of the
# piece, the actor's undo, the seed event reporting it).
UNDO_ORDER = (
    ("forwarder", "stop_forwarding", EVENT_FORWARDER_STOPPED),
    ("endpoint_shell", "close", EVENT_ENDPOINT_SHELL_CLOSED),
    ("container", "stop_domain", EVENT_CONTAINER_DOMAIN_STOPPED),
)


@dataclass
class Undone:
    """What ending a container's pieces came to."""

    domain_gone: bool = False
    errors: list[BaseException] = field(default_factory=list)
    first_failure: Transition | None = None  # what a runtime error report stands on


def end_pieces(
    context: EngineContext,
    pieces: dict[str, Any],
    call_context: int,
    data: dict,
    reason: str | None = None,
    details: dict | None = None,
) -> Undone:
    """End each piece (``pieces``: data key → actor proxy or None) in ``UNDO_ORDER``.

    Every undo runs even when an earlier one raised; each is journalled by its actor (a
    failed undo leaves its entity ``failed`` with the error). A stop event fires after its
    transition when the piece was live; an actor that failed by itself (``@governed``) is
    already destroyed, and its own ``fail`` stands for the stop a handler must hear about.
    """
    undone = Undone(domain_gone=pieces.get("container") is None)
    for key, undo, event in UNDO_ORDER:
        proxy = pieces.get(key)
        if proxy is None:
            continue
        try:
            transition = getattr(proxy, undo)(call_context, reason, details).get()
            failure = proxy.failure.get()
        except Exception as exc:
            log.error("ending a container: %s.%s raised: %s", key, undo, one_line(exc))
            undone.errors.append(exc)
            continue
        if key == "container":
            undone.domain_gone = True
        pause(context.settings, f"end:{key}_stopped")
        if transition is None and failure is not None and failure.source.startswith("started"):
            transition = failure
        if undone.first_failure is None:
            if transition is not None and transition.trigger == "fail":
                undone.first_failure = transition
            else:
                undone.first_failure = failure
        if transition is not None:
            context.dispatch.emit_contained(transition, event, call_context, {**data, key: proxy})
    return undone


def teardown(
    context: EngineContext,
    entry: LiveContainer,
    call_context: int,
    data: dict | None = None,
    details: dict | None = None,
) -> list[BaseException]:
    """End a claimed container: forwarder, then domain, then credentials.

    The slot is freed only when the domain is known gone; a container whose domain could
    not be destroyed stays claimed (``Registry.stuck``) and its actor alive, for the reaper
    to try again. Returns the errors met (each also journalled by its entity).
    """
    pieces = {"forwarder": entry.forwarder, "container": entry.container}
    undone = end_pieces(context, pieces, call_context, dict(data or {}), None, details)
    try:
        context.journal.delete_credentials(entry.uuid)
    except Exception as exc:
        undone.errors.append(exc)
    stop_actor(entry.forwarder)
    if undone.domain_gone:
        stop_actor(entry.container)
        context.registry.free(entry.uuid).get()
    else:
        context.registry.mark_stuck(entry.uuid).get()
    return undone.errors


def end_live(
    context: EngineContext, container_uuid: str, call_context: int, details: dict
) -> list[BaseException] | None:
    """End a live container by its UUID (the reaper, an administrator's ``containers
    destroy``): claimed, its token revoked, torn down; each error met reported once
    (``on_runtime_error``). None when no live container has that UUID (anymore).

    Claimed before the token is revoked, unlike a client's DESTROY (which has proved it
    holds the token): a UUID whose CREATE is still in flight must keep its credentials.
    """
    entry = context.registry.claim(container_uuid).get()
    if entry is None:
        return None
    log.info("container %s: destroying it (%s)", container_uuid, details.get("reason"))
    # The token stops working first, as for a DESTROY.
    context.journal.delete_credentials(container_uuid)
    errors = teardown(context, entry, call_context, details=details)
    for exc in errors:
        context.dispatch.report(exc, {}, None, call_context)
    return errors
