"""CREATE: the one flow with many steps, each undone in reverse if a later one fails.

Each step asks the actor that owns the piece (container, endpoint shell, forwarder); the
actor journals the step's transition, then acts, then answers with the transition, and
only then does this code fire the seed's event for it — on the session's thread, in the
seed's order. A CREATE is complete only once its response is delivered (the client
acknowledged the length frame and the body is written): a client that gave up, a handler
that closed it, a server that began stopping, or any failure unwinds every step done so
far, each undo journalled, each undo run even when an earlier one raised.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from anweddol_actors.actors.base import one_line
from anweddol_actors.actors.container import ContainerError, wait_ready
from anweddol_actors.actors.registry import LiveContainer
from anweddol_actors.engine.context import EngineContext, Request
from anweddol_actors.engine.entities import (
    start_container,
    start_forwarder,
    start_shell,
    stop_actor,
)
from anweddol_actors.engine.pause import pause
from anweddol_actors.engine.verbs import (
    HYPERVISOR_UNREACHABLE,
    end_pieces,
    new_client_token,
    respond,
)
from anweddol_actors.errors import AnweddolError
from anweddol_actors.hypervisor import HypervisorUnavailable
from anweddol_actors.image.checksum import iso_sha256
from anweddol_actors.lifecycle import Transition
from anweddol_actors.lifecycle.events import (
    CONTEXT_ERROR,
    CONTEXT_NORMAL_PROCESS,
    EVENT_CONTAINER_CREATED,
    EVENT_CONTAINER_DOMAIN_STARTED,
    EVENT_ENDPOINT_SHELL_CLOSED,
    EVENT_ENDPOINT_SHELL_CREATED,
    EVENT_ENDPOINT_SHELL_OPENED,
    EVENT_FORWARDER_CREATED,
    EVENT_FORWARDER_STARTED,
)
from anweddol_actors.protocol.messages import (
    RESPONSE_MSG_INTERNAL_ERROR,
    RESPONSE_MSG_OK,
    RESPONSE_MSG_UNAVAILABLE,
)
from anweddol_actors.transport.channel import ClientChannel
from anweddol_actors.transport.http_channel import HttpChannel

# The channels that carry a client's address (a verb run by hand may have none).
_CLIENT_CHANNELS = (ClientChannel, HttpChannel)

log = logging.getLogger(__name__)


class HandleEnded(AnweddolError):
    """A handler closed the client: the seed's signal that the handling ends here."""


class ServerStopping(AnweddolError, RuntimeError):
    """The server began stopping while the CREATE was in flight."""


class EndpointShellClosed(AnweddolError, RuntimeError):
    """A handler closed the endpoint shell before the client's user was created."""


class ResponseNotDelivered(AnweddolError, RuntimeError):
    """The client went away before its CREATE response was delivered."""


@dataclass
class _Done:
    """What a CREATE has done so far: what its unwind must undo."""

    container: Any = None  # ContainerActor proxy
    container_uuid: str | None = None
    shell: Any = None
    forwarder: Any = None
    credentials_stored: bool = False
    registered: bool = False


def _hypervisor_lost(exc: BaseException) -> bool:
    """Whether libvirt's unreachability is behind ``exc`` (raised, or its cause)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, HypervisorUnavailable):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def create(request: Request) -> dict | None:
    context = request.context
    # Where the time goes (metrics/families.py, CREATE_PHASES): observed once delivered.
    clock = context.metrics.create_clock()
    if context.stopping.is_set():
        reason = "The server is stopping"
    elif not context.hypervisor_ready():
        # Checked before anything is made: an outage known now costs nothing.
        reason = HYPERVISOR_UNREACHABLE
    elif not context.registry.reserve_slot().get():
        reason = "The maximum amount of running containers is reached"
    else:
        reason = None
    if reason is not None:
        return respond(request, False, RESPONSE_MSG_UNAVAILABLE, reason=reason)
    clock.lap("admission")
    done = _Done()
    try:
        response_data = _steps(request, done, clock)
    except HandleEnded:
        _unwind(context, done, request.base_data, "the client was closed by a handler")
        return None
    except Exception as exc:
        transition = _unwind(context, done, request.base_data, f"create failed: {one_line(exc)}")
        context.dispatch.report(exc, request.base_data, transition)
        log.warning("CREATE failed: %s", one_line(exc))
        try:
            if _hypervisor_lost(exc):
                # Not the server's fault, and worth a retry once libvirt is back.
                return respond(
                    request, False, RESPONSE_MSG_UNAVAILABLE, reason=HYPERVISOR_UNREACHABLE
                )
            return respond(request, False, RESPONSE_MSG_INTERNAL_ERROR)
        except Exception:
            return None  # the client is gone too: nobody to tell
    try:
        response = respond(request, True, RESPONSE_MSG_OK, response_data)
    except Exception as exc:
        # Complete only once delivered: a client that gave up gets no VM nobody holds.
        _unwind(context, done, request.base_data, f"response not delivered: {one_line(exc)}")
        raise ResponseNotDelivered(
            f"the CREATE response was not delivered: {one_line(exc)}"
        ) from exc
    _mark_serving(done, response_data["container_listen_port"])
    clock.lap("response")
    clock.done()
    pause(context.settings, "create:response_sent")
    return response


def _mark_serving(done: _Done, listen_port: int) -> None:
    """Journal that the client holds its container: only a serving container is adopted
    after a crash, so one whose response never left is destroyed, not kept for nobody."""
    try:
        done.container.mark_serving(listen_port, CONTEXT_NORMAL_PROCESS).get()
    except Exception as exc:
        # The reaper or a stop may already be ending it (it is registered): theirs now.
        log.info("container %s not marked serving: %s", done.container_uuid, one_line(exc))


def _steps(request: Request, done: _Done, clock: Any) -> dict:
    context = request.context
    settings = context.settings
    base = request.base_data

    def emit(transition: Transition, event: str, data: dict) -> None:
        context.dispatch.emit(transition, event, CONTEXT_NORMAL_PROCESS, {**base, **data})
        if request.client_gone:
            raise HandleEnded(event)
        go_on()

    def go_on() -> None:
        """Between steps: a server that began stopping ends the CREATE here."""
        if context.stopping.is_set():
            raise ServerStopping("the server is stopping")

    container = start_container(context)
    done.container = container
    done.container_uuid = container_uuid = container.uuid.get()
    emit(
        container.create(CONTEXT_NORMAL_PROCESS).get(),
        EVENT_CONTAINER_CREATED,
        {"container": container},
    )
    pause(settings, "create:created")

    _start_domain_unless_started(container, container_uuid, emit)
    clock.lap("define")
    pause(settings, "create:domain_started")

    host, port = wait_ready(container, container_uuid, settings.ready_timeout)
    clock.lap("boot")
    go_on()
    # In ``user`` mode the guest's port 22 is reached through QEMU's loopback forward.
    shell_port = port if settings.network_mode == "user" else settings.endpoint_listen_port
    shell = start_shell(context, container_uuid, host, shell_port)
    done.shell = shell
    emit(
        shell.create(CONTEXT_NORMAL_PROCESS).get(),
        EVENT_ENDPOINT_SHELL_CREATED,
        {"endpoint_shell": shell},
    )

    emit(
        shell.open(CONTEXT_NORMAL_PROCESS).get(),
        EVENT_ENDPOINT_SHELL_OPENED,
        {"endpoint_shell": shell},
    )
    pause(settings, "create:shell_opened")

    if shell.describe().get()["state"] == "started":
        # Credentials a handler stored (or the ones it set with administrateContainer) are
        # used as they are: generated only when there are none, set in the guest once.
        shell.ensure_client_credentials(settings.password_length).get()
        username, password = shell.administer(22).get()
        container.mark_administered(username, CONTEXT_NORMAL_PROCESS).get()
        pause(settings, "create:credentials_set")

        transition = shell.close(CONTEXT_NORMAL_PROCESS).get()
        done.shell = None  # closed and journalled: nothing left to undo
        try:
            # The handler may still ask the shell about itself: its actor ends after.
            emit(transition, EVENT_ENDPOINT_SHELL_CLOSED, {"endpoint_shell": shell})
        finally:
            stop_actor(shell)
    else:
        username, password = _administered_by_handler(shell, container_uuid)
        done.shell = None  # closed (journalled) by the handler: nothing left to undo
        stop_actor(shell)
        container.mark_administered(username, CONTEXT_NORMAL_PROCESS).get()
        pause(settings, "create:credentials_set")

    clock.lap("administration")

    # The CREATE's address owns the forwarder: strangers never fill the guest's SSH slots.
    owner = request.channel.ip if isinstance(request.channel, _CLIENT_CHANNELS) else None
    forwarder = start_forwarder(context, container_uuid, (host, port), owner=owner or None)
    done.forwarder = forwarder
    transition = forwarder.create(CONTEXT_NORMAL_PROCESS).get()
    listen_port = forwarder.describe().get()["port"]
    emit(transition, EVENT_FORWARDER_CREATED, {"forwarder": forwarder})

    emit(
        forwarder.start_forwarding(CONTEXT_NORMAL_PROCESS).get(),
        EVENT_FORWARDER_STARTED,
        {"forwarder": forwarder},
    )
    clock.lap("forwarder")
    pause(settings, "create:forwarder_started")

    token = new_client_token()
    context.journal.store_credentials(container_uuid, token)
    done.credentials_stored = True
    channel = request.channel
    entry = LiveContainer(
        uuid=container_uuid,
        container=container,
        forwarder=forwarder,
        client_ip=channel.ip if isinstance(channel, _CLIENT_CHANNELS) else "",
    )
    if not context.registry.add(entry).get():
        raise ServerStopping("the server is stopping")
    done.registered = True
    pause(settings, "create:credentials_stored")
    iso_path = container.settings.get().iso_path
    response_data = {
        "container_uuid": container_uuid,
        "client_token": token,
        "container_iso_sha256": iso_sha256(iso_path),
        "container_username": username,
        "container_password": password,
        "container_listen_port": listen_port,
        # Extra keys: clients ignore unknown ones (PROTOCOL.md §3).
        "container_max_lifetime": settings.max_lifetime,
        "container_max_idle_time": settings.max_idle_time,
    }
    clock.lap("credentials")
    return response_data


def _administered_by_handler(shell: Any, container_uuid: str) -> tuple[str, str]:
    """The credentials set by a handler that administered the guest and closed the shell
    itself in ``on_endpoint_shell_opened`` (the original then skips its own steps, and
    ``on_endpoint_shell_closed`` with them)."""
    administered = shell.describe().get()["administered"]
    if administered is None:
        raise EndpointShellClosed(
            f"container {container_uuid}: a handler closed the endpoint shell before the"
            " client's user was created (administrateContainer)"
        )
    return administered


def _start_domain_unless_started(container: Any, container_uuid: str, emit: Any) -> None:
    """Start the domain, unless an ``on_container_created`` handler did (the original's own
    server does): its ``startDomain`` went through this container's machine, so the
    ``start`` is journalled once, whoever fired it. As in the original,
    ``on_container_domain_started`` stands for the engine's start only: a handler that
    started the domain knows it did."""
    state = container.snapshot().get()["state"]
    if state == "created":
        transition = container.start_domain(CONTEXT_NORMAL_PROCESS).get()
        emit(transition, EVENT_CONTAINER_DOMAIN_STARTED, {"container": container})
    elif state.startswith("started"):
        log.info("container %s: its domain was started by a handler", container_uuid)
    else:
        # A handler started and stopped it, or its start failed and was swallowed.
        raise ContainerError(f"container {container_uuid} is {state} after on_container_created")


def _unwind(context: EngineContext, done: _Done, base: dict, reason: str) -> Transition | None:
    """Undo a failed CREATE in reverse. Every undo runs even when an earlier one raised;
    each is journalled by its actor (``fail`` with the reason, then ``destroy``; a failed
    undo leaves its entity ``failed`` with the error). The slot is given back only when
    the domain is known gone. Returns the first ``fail`` transition journalled (what the
    runtime error report stands on)."""
    if done.registered:
        # Taken back from service; if the reaper or a stop claimed it first, it is theirs.
        if context.registry.claim(done.container_uuid).get() is None:
            return None
    if done.credentials_stored:
        try:
            context.journal.delete_credentials(done.container_uuid)
        except Exception:
            log.exception("container %s: credentials not deleted", done.container_uuid)
    pieces = {
        "forwarder": done.forwarder,
        "endpoint_shell": done.shell,
        "container": done.container,
    }
    undone = end_pieces(context, pieces, CONTEXT_ERROR, base, reason)
    domain_gone = undone.domain_gone
    if done.forwarder is not None:
        stop_actor(done.forwarder)
    if done.shell is not None:
        stop_actor(done.shell)
    if domain_gone:
        if done.container is not None:
            stop_actor(done.container)
        if done.registered:
            context.registry.free(done.container_uuid).get()
        else:
            context.registry.release_slot().get()
    else:
        # Its domain may still run: the slot stays taken and the reaper tries again.
        log.error("container %s: domain not destroyed; its slot stays taken", done.container_uuid)
        if done.registered:
            context.registry.mark_stuck(done.container_uuid).get()
        else:
            entry = LiveContainer(
                uuid=done.container_uuid, container=done.container, forwarder=done.forwarder
            )
            context.registry.keep_stuck(entry).get()
    return undone.first_failure
