"""CREATE: the one flow with many steps, each undone in reverse if a later one fails.

Each step asks the actor that owns the piece (container, endpoint shell, forwarder); the
actor journals the step's transition, then acts, then answers with the transition, and
only then does this code fire the seed's event for it — on the session's thread, in the
seed's order. A CREATE is complete only once its response is delivered (the client
acknowledged the length frame and the body is written): a client that gave up, a handler
that closed it, a server that began stopping, or any failure unwinds every step done so
far, each undo journalled, each undo run even when an earlier one raised.

The warm pool (``pool.py``) makes its containers here too (:func:`fill`): the same steps,
with only ``on_container_created`` fired then (``CONTEXT_AUTOMATIC_ACTION``, so handlers
may still size the container before it boots); the other events are kept, and a CREATE
that takes the pooled container fires them at handover (:func:`_handover`), in the
seed's order, with the client's data, before it starts the forwarder and registers the
container. A failed fill is unwound by the same :func:`_unwind` as a failed CREATE.

A CREATE's container goes to the host placement chose (``placement.place``: its slot
claimed there), or to the host of the pooled container it takes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
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
from anweddol_actors.engine.placement import place
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
    CONTEXT_AUTOMATIC_ACTION,
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
    pooled: bool = False  # its slot is the warm pool's (a fill), not a CREATE's
    host: str | None = None  # the host its slot is claimed on (placement.py)
    closed_shell: Any = None  # a shell closed (journalled) whose actor still lives


@dataclass
class Pooled:
    """A warm pool's container, ready to be handed over: its actors, the credentials set
    in its guest, its forwarder's reserved port, and the events its making backs, each
    ``(transition, event, data)``, that the CREATE taking it fires."""

    uuid: str
    container: Any
    shell: Any  # closed, its actor kept until its events have fired at handover
    forwarder: Any  # created (port reserved), not relaying
    username: str
    password: str
    listen_port: int
    events: list[tuple[Transition, str, dict]] = field(default_factory=list)
    host: str | None = None  # the host it runs on (each host has its own pool)


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
    else:
        reason = None
    pooled = None
    host = None
    if reason is None:
        pooled = _take_pooled(context)
        if pooled is not None:
            host = pooled.host
        else:
            # Filter, weigh, claim (placement.py): the slot is this CREATE's from here on.
            host = place(context)
            if host is None:
                reason = "The maximum amount of running containers is reached"
    if reason is not None:
        return respond(request, False, RESPONSE_MSG_UNAVAILABLE, reason=reason)
    clock.lap("admission")
    done = _Done(host=host)
    try:
        if pooled is not None:
            response_data = _handover(request, done, pooled, clock)
        else:
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


def _take_pooled(context: EngineContext) -> Pooled | None:
    """A ready pooled container for this CREATE, its slot now the CREATE's; None when the
    pool has none (a CREATE then goes cold). A pooled container whose domain died while it
    waited is ended (journalled) and the next one tried."""
    pool = context.pool
    if pool is None:
        return None
    while True:
        pooled = pool.take()
        if pooled is None:
            return None
        try:
            running = pooled.container.is_domain_running().get()
        except Exception:
            running = False
        if running:
            # Taken atomically from the pool: no other CREATE can have it; its slot is
            # this CREATE's from here on (its unwind gives back a pending slot).
            context.registry.hand_over(pooled.host).get()
            return pooled
        log.warning("warm pool: container %s is no longer running; ending it", pooled.uuid)
        discard(context, pooled, "its domain stopped while pooled")


def _go_on(context: EngineContext) -> None:
    """Between steps: a server that began stopping ends the CREATE (or the fill) here."""
    if context.stopping.is_set():
        raise ServerStopping("the server is stopping")


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
        _go_on(context)

    container = start_container(context, host=done.host)
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
    _go_on(context)
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
    return _register(request, done, username, password, listen_port, clock)


def _register(
    request: Request, done: _Done, username: str, password: str, listen_port: int, clock: Any
) -> dict:
    """The CREATE's last steps, cold or warm: the client's token, the container live in
    the registry (its lifetime and idle time count from here), the response's data."""
    context = request.context
    settings = context.settings
    container, forwarder = done.container, done.forwarder
    container_uuid = done.container_uuid
    token = new_client_token()
    context.journal.store_credentials(container_uuid, token)
    done.credentials_stored = True
    channel = request.channel
    entry = LiveContainer(
        uuid=container_uuid,
        container=container,
        forwarder=forwarder,
        client_ip=channel.ip if isinstance(channel, _CLIENT_CHANNELS) else "",
        host=done.host or context.hosts.first.name,
    )
    if not context.registry.add(entry).get():
        raise ServerStopping("the server is stopping")
    done.registered = True
    pause(settings, "create:credentials_stored")
    iso_path = container.settings.get().iso_path
    response_data = {
        "container_uuid": container_uuid,
        "client_token": token,
        "container_iso_sha256": _iso_checksum(context, iso_path),
        "container_username": username,
        "container_password": password,
        "container_listen_port": listen_port,
        # Extra keys: clients ignore unknown ones (PROTOCOL.md §3).
        "container_max_lifetime": settings.max_lifetime,
        "container_max_idle_time": settings.max_idle_time,
    }
    clock.lap("credentials")
    return response_data


def _iso_checksum(context: EngineContext, iso_path: str) -> str:
    """The SHA-256 of the container's ISO. A remote host's own ISO may live only on that
    host's disk: when this server cannot read it, the checksum is the server's own ISO's
    (the copy the host's was made from), and the log says so."""
    try:
        return iso_sha256(iso_path)
    except OSError as exc:
        own = context.settings.iso_path
        if own is None or str(own) == str(iso_path):
            raise
        log.warning(
            "ISO %s not readable here (%s): the CREATE answer carries the checksum of %s",
            iso_path,
            exc.strerror or exc,
            own,
        )
        return iso_sha256(own)


def _handover(request: Request, done: _Done, pooled: Pooled, clock: Any) -> dict:
    """Hand a pooled container to this CREATE: fire the events its making backs (each
    journalled then), set the forwarder's owner, start relaying, register it."""
    context = request.context
    base = request.base_data
    done.container, done.container_uuid = pooled.container, pooled.uuid
    done.forwarder = pooled.forwarder
    done.closed_shell = pooled.shell

    def emit(transition: Transition, event: str, data: dict) -> None:
        context.dispatch.emit(transition, event, CONTEXT_NORMAL_PROCESS, {**base, **data})
        if request.client_gone:
            raise HandleEnded(event)
        _go_on(context)

    try:
        for transition, event, data in pooled.events:
            emit(transition, event, data)
    finally:
        # Handlers of on_endpoint_shell_closed may ask the shell about itself: it ends
        # only once its events have fired.
        stop_actor(pooled.shell)
        done.closed_shell = None
    # The handed-over events (administration) and the taking of it: no boot to wait for.
    clock.lap("administration")
    owner = request.channel.ip if isinstance(request.channel, _CLIENT_CHANNELS) else None
    pooled.forwarder.set_owner(owner or None).get()
    emit(
        pooled.forwarder.start_forwarding(CONTEXT_NORMAL_PROCESS).get(),
        EVENT_FORWARDER_STARTED,
        {"forwarder": pooled.forwarder},
    )
    clock.lap("forwarder")
    return _register(request, done, pooled.username, pooled.password, pooled.listen_port, clock)


def fill(context: EngineContext, host: str | None = None) -> Pooled:
    """Make one pooled container on ``host`` (None: the first), the pool's slot already
    taken there. A failure is unwound (journalled, the slot given back once the domain is
    gone), reported once (``on_runtime_error``) and raised."""
    done = _Done(pooled=True, host=host)
    try:
        return _fill_steps(context, done)
    except Exception as exc:
        reason = f"warm pool fill failed: {one_line(exc)}"
        transition = _unwind(context, done, {}, reason)
        if not context.stopping.is_set():
            context.dispatch.report(exc, {}, transition)
        raise


def discard(context: EngineContext, pooled: Pooled, reason: str) -> None:
    """End a pooled container nobody took (the server stops, or it broke while waiting):
    stopped and destroyed, journalled, its pool slot given back."""
    done = _Done(
        container=pooled.container,
        container_uuid=pooled.uuid,
        forwarder=pooled.forwarder,
        pooled=True,
        closed_shell=pooled.shell,
        host=pooled.host,
    )
    _unwind(context, done, {}, None, CONTEXT_AUTOMATIC_ACTION, {"reason": reason})


def _fill_steps(context: EngineContext, done: _Done) -> Pooled:
    settings = context.settings
    events: list[tuple[Transition, str, dict]] = []

    def keep(transition: Transition, event: str, data: dict) -> None:
        """Journalled now; its event fires at handover, with the client."""
        events.append((transition, event, data))
        _go_on(context)

    container = start_container(context, host=done.host)
    done.container = container
    done.container_uuid = container_uuid = container.uuid.get()
    # Now, not at handover: handlers may still size the container before it boots.
    context.dispatch.emit(
        container.create(CONTEXT_AUTOMATIC_ACTION).get(),
        EVENT_CONTAINER_CREATED,
        CONTEXT_AUTOMATIC_ACTION,
        {"container": container},
    )
    _go_on(context)
    _start_domain_unless_started(container, container_uuid, keep, CONTEXT_AUTOMATIC_ACTION)
    host, port = _wait_ready_unless_stopping(context, container, container_uuid)
    shell_port = port if settings.network_mode == "user" else settings.endpoint_listen_port
    shell = start_shell(context, container_uuid, host, shell_port)
    done.shell = shell
    keep(shell.create(CONTEXT_AUTOMATIC_ACTION).get(), EVENT_ENDPOINT_SHELL_CREATED, {})
    keep(shell.open(CONTEXT_AUTOMATIC_ACTION).get(), EVENT_ENDPOINT_SHELL_OPENED, {})
    # Fresh random credentials for each pooled container (none is stored for it yet).
    shell.ensure_client_credentials(settings.password_length).get()
    username, password = shell.administer(22).get()
    container.mark_administered(username, CONTEXT_AUTOMATIC_ACTION).get()
    transition = shell.close(CONTEXT_AUTOMATIC_ACTION).get()
    done.shell, done.closed_shell = None, shell
    keep(transition, EVENT_ENDPOINT_SHELL_CLOSED, {})
    forwarder = start_forwarder(context, container_uuid, (host, port))
    done.forwarder = forwarder
    keep(forwarder.create(CONTEXT_AUTOMATIC_ACTION).get(), EVENT_FORWARDER_CREATED, {})
    listen_port = forwarder.describe().get()["port"]
    container.mark_pooled(listen_port, CONTEXT_AUTOMATIC_ACTION).get()
    # The data handed to the handlers at handover: each event with its entity's proxy.
    pieces = {"container": container, "endpoint_shell": shell, "forwarder": forwarder}
    for _transition, event, data in events:
        data.update(_piece_of(event, pieces))
    pooled = Pooled(
        uuid=container_uuid,
        container=container,
        shell=shell,
        forwarder=forwarder,
        username=username,
        password=password,
        listen_port=listen_port,
        events=events,
        host=done.host,
    )
    done.closed_shell = None  # the pooled container owns its actors now
    return pooled


def _piece_of(event: str, pieces: dict) -> dict:
    for key in ("container", "endpoint_shell", "forwarder"):
        if event.startswith(f"on_{key}_"):
            return {key: pieces[key]}
    return {}


def _wait_ready_unless_stopping(
    context: EngineContext, container: Any, container_uuid: str
) -> tuple[str, int]:
    """``wait_ready`` in short waits, so that a stop cuts a fill's boot wait at once (a
    stop waits for the pool; a CREATE's own wait is bounded by its grace instead)."""
    timeout = context.settings.ready_timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if context.stopping.is_set():
            raise ServerStopping("the server is stopping")
        step = _FILL_WAIT_SLICE
        if deadline is not None:
            step = min(step, deadline - time.monotonic())
        try:
            return wait_ready(container, container_uuid, max(step, 0.1))
        except TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"container {container_uuid}: no SSH banner within {timeout:g} s"
                ) from None


# How long a fill waits for the guest's banner between two looks at the server's stop.
_FILL_WAIT_SLICE = 2.0


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


def _start_domain_unless_started(
    container: Any, container_uuid: str, emit: Any, call_context: int = CONTEXT_NORMAL_PROCESS
) -> None:
    """Start the domain, unless an ``on_container_created`` handler did (the original's own
    server does): its ``startDomain`` went through this container's machine, so the
    ``start`` is journalled once, whoever fired it. As in the original,
    ``on_container_domain_started`` stands for the engine's start only: a handler that
    started the domain knows it did."""
    state = container.snapshot().get()["state"]
    if state == "created":
        transition = container.start_domain(call_context).get()
        emit(transition, EVENT_CONTAINER_DOMAIN_STARTED, {"container": container})
    elif state.startswith("started"):
        log.info("container %s: its domain was started by a handler", container_uuid)
    else:
        # A handler started and stopped it, or its start failed and was swallowed.
        raise ContainerError(f"container {container_uuid} is {state} after on_container_created")


def _unwind(
    context: EngineContext,
    done: _Done,
    base: dict,
    reason: str | None,
    call_context: int = CONTEXT_ERROR,
    details: dict | None = None,
) -> Transition | None:
    """Undo a failed CREATE (or a pool's fill, or end a pooled container) in reverse.
    Every undo runs even when an earlier one raised; each is journalled by its actor
    (``fail`` with the reason — ``stop`` when there is none — then ``destroy``; a failed
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
    undone = end_pieces(context, pieces, call_context, base, reason, details)
    domain_gone = undone.domain_gone
    if done.forwarder is not None:
        stop_actor(done.forwarder)
    if done.shell is not None:
        stop_actor(done.shell)
    stop_actor(done.closed_shell)
    if domain_gone:
        if done.container is not None:
            stop_actor(done.container)
        if done.registered:
            context.registry.free(done.container_uuid).get()
        else:
            context.registry.release_slot(done.pooled, done.host).get()
    else:
        # Its domain may still run: the slot stays taken and the reaper tries again.
        log.error("container %s: domain not destroyed; its slot stays taken", done.container_uuid)
        if done.registered:
            context.registry.mark_stuck(done.container_uuid).get()
        else:
            entry = LiveContainer(
                uuid=done.container_uuid,
                container=done.container,
                forwarder=done.forwarder,
                host=done.host or context.hosts.first.name,
            )
            context.registry.keep_stuck(entry, done.pooled).get()
    return undone.first_failure
