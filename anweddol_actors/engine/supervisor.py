"""The supervisor: starts the server's parts in dependency order and stops them in reverse.

Start: journal → registry → reconciliation → reaper → warm pool → listener → front end
(with ``server.front_end``: its lease, its notifications, its takeovers), waiting for
each; a part that fails to start stops those already started. Stop, in a ``finally``
whatever raises: no request is admitted any more (the registry closes, CREATEs in flight
unwind at their next step), the listener stops, sessions get a bounded time to finish and
are then cut, every container is torn down (each even when another raised), the warm pool
ends its fill in flight and its ready containers, the reaper stops. What is left
afterwards (live actors, domains of ours) is logged as a bug, not hidden.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pykka

from anweddol_actors.actors.container import ContainerActor
from anweddol_actors.actors.endpoint_shell import EndpointShellActor
from anweddol_actors.actors.forwarder import ForwarderActor
from anweddol_actors.actors.registry import Registry
from anweddol_actors.engine import recovery
from anweddol_actors.engine.context import EngineContext, Request, Verb
from anweddol_actors.engine.dispatch import Dispatch
from anweddol_actors.engine.entities import stop_actor
from anweddol_actors.engine.frontends import FrontEnd, JournalCapacity
from anweddol_actors.engine.hostloss import HostWatch
from anweddol_actors.engine.hosts import Hosts
from anweddol_actors.engine.pool import Pools
from anweddol_actors.engine.reaper import Reaper
from anweddol_actors.engine.session import Session, SessionActor
from anweddol_actors.engine.settings import Settings
from anweddol_actors.engine.verbs import teardown
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle, Transition
from anweddol_actors.lifecycle.events import CONTEXT_AUTOMATIC_ACTION, CONTEXT_NORMAL_PROCESS
from anweddol_actors.metrics import Metrics
from anweddol_actors.transport import ClientChannel, ConnectionLimits, HttpChannel, Listener

log = logging.getLogger(__name__)

# How long a CREATE in flight may take to unwind once the server stops (its steps check
# the stop between steps; a boot wait is cut in 2 s slices).
_UNWIND_GRACE = 30.0


def owner_of(journal: Journal) -> str:
    """This server's mark on its domains: the server id kept in its journal, created once
    (so a restart finds its orphans, whatever the hostname became since). An in-memory
    journal gets a random one: a fixed id shared by two in-memory servers on one host
    would make each destroy the other's domains at start. A named front end's id is its
    own (two front ends on one journal never share a mark), and was never derived."""
    if journal.path == ":memory:" or journal.postgresql or journal.front_end is not None:
        return journal.server_id()

    def legacy() -> str:
        # What the previous version derived for this file: the mark its domains carry.
        where = f"{socket.gethostname()}:{os.path.realpath(journal.path)}"
        return hashlib.sha256(where.encode()).hexdigest()[:16]

    return journal.server_id(legacy)


class Server:
    def __init__(
        self,
        settings: Settings,
        *,
        passive: bool = False,
        private_key: Any = None,
        journal: Journal | None = None,
    ) -> None:
        journal = (
            journal
            if journal is not None
            else Journal(settings.database, front_end=settings.front_end)
        )
        hosts = Hosts(settings)
        # Front ends sharing the journal share the hosts' capacity through it.
        shared = JournalCapacity(journal) if settings.front_end is not None else None
        self.context = EngineContext(
            settings=settings,
            journal=journal,
            registry=Registry.start(settings.max_containers, hosts.limits(), shared).proxy(),
            dispatch=Dispatch(),
            hosts=hosts,
            owner=owner_of(journal),
            private_key=private_key,
            passive=passive,
            metrics=Metrics(),
        )
        if settings.warm_pool_size > 0:
            self.context.pool = Pools(self.context, settings.warm_pool_size)
        self.lifecycle = Lifecycle("server", uuid.uuid4().hex, journal)
        self._listener: Listener | None = None
        self._reaper: Reaper | None = None
        self._host_watches: list[HostWatch] = []
        self._front_end: FrontEnd | None = None
        self._sessions: set[Session] = set()
        self._sessions_lock = threading.Lock()
        # Open client connections against server.max_connections(_per_address); what the
        # listener refused is counted here (``connection_limits.refused``).
        self.connection_limits = ConnectionLimits(
            settings.max_connections, settings.max_connections_per_address
        )
        self._stopped = threading.Event()
        self._state_lock = threading.Lock()

    # -- what the façade reads -----------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self.context.settings

    @property
    def journal(self) -> Journal:
        return self.context.journal

    @property
    def registry(self) -> Any:
        return self.context.registry

    @property
    def dispatch(self) -> Dispatch:
        return self.context.dispatch

    @property
    def verbs(self) -> dict[str, Verb]:
        return self.context.verbs

    @property
    def owner(self) -> str:
        return self.context.owner

    @property
    def running(self) -> bool:
        return self.lifecycle.state == "started"

    @property
    def listen_address(self) -> tuple:
        return self._listener.address if self._listener is not None else ("", 0)

    # -- start and stop ----------------------------------------------------------------

    def start(self) -> Transition:
        """Start the parts in order; the server's ``start`` transition comes last, so a
        server seen running has every part running. Returns that transition."""
        with self._state_lock:
            context = self.context
            self._stopped.clear()
            context.stopping.clear()
            try:
                context.registry.open().get()
                recovery.begin(context)
                self._reaper = Reaper(context)
                self._reaper.start()
                # Host loss: one watcher per hypervisor host. Stopped in _stop_parts,
                # before the journal closes.
                self._host_watches = [
                    HostWatch(context, host.name, host.link) for host in context.hosts
                ]
                for watch in self._host_watches:
                    watch.start()
                if context.pool is not None:
                    # It fills once the reconciliation ran and libvirt answers.
                    context.pool.start()
                if not context.passive:
                    self._listener = Listener(
                        context.settings.bind_address,
                        context.settings.listen_port,
                        self._spawn_session,
                        allows=context.settings.ip_allows,
                        limits=self.connection_limits,
                    )
                    self._listener.start()
                if context.settings.front_end is not None:
                    self._front_end = FrontEnd(
                        context, self._front_end_address(), self._reaper.reap_later
                    )
                    self._front_end.start()
                context.started_at = time.monotonic()
                port = self._listener.address[1] if self._listener is not None else None
                return self.lifecycle.fire(
                    "start", context=CONTEXT_NORMAL_PROCESS, data={"listen_port": port}
                )
            except BaseException:
                context.stopping.set()  # a fill in flight unwinds at its next step
                self._stop_parts()
                raise

    def stop(self) -> tuple[Transition | None, list[BaseException]]:
        """Stop in reverse order; returns the ``stop`` transition and the errors met (the
        façade reports them)."""
        with self._state_lock:
            errors: list[BaseException] = []
            context = self.context
            context.stopping.set()
            try:
                context.registry.close().get()
                if self._listener is not None:
                    self._listener.stop()
                    self._listener = None
                self._drain_sessions()
                errors.extend(self._stop_all_containers())
            finally:
                self._stop_parts()  # the reaper first: it would retry the stuck ones too
                try:
                    self._end_stuck()
                except Exception:
                    log.exception("stop: could not end the stuck containers")
                transition = None
                if self.lifecycle.can("stop"):
                    transition = self.lifecycle.fire("stop", context=CONTEXT_NORMAL_PROCESS)
                self._stopped.set()
                self._log_leftovers()
            return transition, errors

    def _stop_parts(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if self.context.pool is not None:
            # Before the journal closes: its containers' ends are journalled.
            self.context.pool.stop()
        if self._reaper is not None:
            self._reaper.stop()
            self._reaper = None
        # Host loss (see start): its sweep must not run on a closed journal.
        for watch in self._host_watches:
            watch.stop()
        self._host_watches = []
        # Last: the containers' ends above reported their slots through the journal; a
        # front end that leaves is not taken over.
        if self._front_end is not None:
            self._front_end.stop()
            self._front_end = None
        self.context.started_at = None

    def _front_end_address(self) -> str:
        """Where this front end serves, as the other front ends list it."""
        host, port = self.listen_address[:2]
        return f"{host or self.context.settings.bind_address}:{port}"

    def _drain_sessions(self) -> None:
        """Let running sessions end by themselves (a CREATE unwinds at its next step),
        then cut those still waiting on a client."""
        settings = self.context.settings
        deadline = time.monotonic() + min(settings.client_timeout or 5, 10) + 1
        unwind_deadline = time.monotonic() + _UNWIND_GRACE
        while True:
            with self._sessions_lock:
                sessions = list(self._sessions)
            creating = self.context.registry.pending_count().get()
            now = time.monotonic()
            if not sessions and not creating:
                return
            if now > unwind_deadline:
                log.error("stop: %d session(s) did not end in time", len(sessions))
                return
            if now > deadline:
                for session in sessions:
                    session.abort()
            time.sleep(0.05)

    def _stop_all_containers(self) -> list[BaseException]:
        errors: list[BaseException] = []
        for container_uuid in self.context.registry.uuids().get():
            entry = self.context.registry.claim(container_uuid).get()
            if entry is None:
                continue
            try:
                errors.extend(
                    teardown(
                        self.context,
                        entry,
                        CONTEXT_AUTOMATIC_ACTION,
                        details={"reason": "server stopping"},
                    )
                )
            except Exception as exc:  # one container's trouble must not spare the others
                errors.append(exc)
        return errors

    def _end_stuck(self) -> None:
        """Containers whose domain could not be destroyed (libvirt unreachable, most
        often): one last try each, then their actors end anyway, since a live actor's
        thread would keep the process from exiting. Their journal entity stays ``failed``,
        so the next start destroys the domain; _log_leftovers names them."""
        registry = self.context.registry
        for entry in registry.stuck().get():
            try:
                entry.container.retry_release().get()
            except Exception as exc:
                log.error(
                    "stop: domain of container %s not destroyed, left to the next start: %s",
                    entry.uuid,
                    exc,
                )
            else:
                registry.free(entry.uuid).get()
            stop_actor(entry.forwarder)
            stop_actor(entry.container)

    def _log_leftovers(self) -> None:
        """What outlives a stop is a bug: say so, loudly."""
        registry = self.context.registry
        stuck = registry.stuck().get()
        if stuck:
            log.error(
                "stop: %d container(s) whose domain could not be destroyed: %s",
                len(stuck),
                ", ".join(entry.uuid for entry in stuck),
            )
        for actor_class in (ContainerActor, EndpointShellActor, ForwarderActor, SessionActor):
            for _ref in pykka.ActorRegistry.get_by_class(actor_class):
                log.error("stop: %s still alive after the server stopped", actor_class.__name__)

    def close(self) -> None:
        """Release everything; the server cannot be started again."""
        if self.lifecycle.can("destroy"):
            self.lifecycle.fire("destroy")
        self.context.registry.actor_ref.stop()
        self.context.hosts.close()
        self.context.journal.close()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    # -- sessions ----------------------------------------------------------------------

    def _new_session(self) -> Session:
        session = Session(self.context, on_end=self._session_ended)
        with self._sessions_lock:
            self._sessions.add(session)
        return session

    def _session_ended(self, session: Session) -> None:
        with self._sessions_lock:
            self._sessions.discard(session)
            address, session.admitted_address = session.admitted_address, None
        if address is not None:
            self.connection_limits.release(address)

    def _spawn_session(self, sock: socket.socket, address: tuple) -> None:
        """The listener's hand-off of an admitted connection: its slot in the limits goes
        with the session, which gives it back when it ends. Raises (the listener then
        closes the socket and gives the slot back) when no session could start."""
        accepted_at = time.monotonic()
        self._start_admitted(address[0], Session.serve_socket, sock, address, accepted_at)

    def _start_admitted(self, ip: str, entry: Callable[..., None], *args: object) -> None:
        """A session on its own actor running ``entry`` (``Session.serve_socket`` or
        ``serve_channel``) for a client admitted into the limits from ``ip``; the session
        gives the slot back when it ends. Raises, the slot still the caller's, when no
        session could start."""
        session = self._new_session()
        try:
            actor = SessionActor.start(session)
        except BaseException:
            self._session_ended(session)
            raise
        # Set before the actor has anything to run: the session gives the slot back.
        session.admitted_address = ip
        SessionActor.serve(actor, functools.partial(entry, session), *args)

    # -- HTTP requests (the web front end) ------------------------------------------------

    def admit_http(self, ip: str) -> str | None:
        """Take a slot for an HTTP request from ``ip``, as the listener admits a TCP
        client: None when admitted (the caller then hands it to :meth:`serve_http`, or
        gives it back with :meth:`release_http`), else why not: ``"stopping"``,
        ``"filtered"`` (IP filter) or ``"limited"`` (``ConnectionLimits``, shared with TCP)."""
        if self.context.stopping.is_set() or not self.running:
            return "stopping"
        allows = self.context.settings.ip_allows
        if allows is not None and not allows(ip):
            log.info("refused %s (IP filter, HTTP)", ip)
            return "filtered"
        if not self.connection_limits.admit(ip):
            return "limited"  # counted and logged (at a bounded rate) by the limits
        return None

    def release_http(self, ip: str) -> None:
        """Give back the slot of an admitted HTTP request that no session took."""
        self.connection_limits.release(ip)

    def serve_http(self, channel: HttpChannel) -> None:
        """Serve an admitted HTTP request: a session on its own actor, which gives the slot
        back when it ends. Raises (the slot is then still the caller's) when no session
        could start."""
        self._start_admitted(channel.ip, Session.serve_channel, channel)

    def handle_channel(self, channel: ClientChannel, asynchronous: bool) -> None:
        """Serve a client the user accepted and wrapped (seed ``handleClient``)."""
        session = self._new_session()
        if asynchronous:
            SessionActor.serve(SessionActor.start(session), session.serve_channel, channel)
        else:
            session.serve_channel(channel)

    def _session_running(self, channel: ClientChannel | None) -> Lifecycle | None:
        """The machine of the session serving ``channel``: a verb run by hand on a live
        client journals its steps (``deny``) there."""
        if channel is None:
            return None
        with self._sessions_lock:
            for session in self._sessions:
                if session.channel is channel:
                    return session.lifecycle
        return None

    def run_verb(
        self,
        routine: Verb,
        channel: ClientChannel | None,
        passive: bool,
        parameters: dict | None = None,
        extra: dict | None = None,
    ) -> Any:
        """Run a verb by hand (seed ``executeRequestHandler``, passive mode).

        A verb journals its steps on a session: the client's own when it has one, else a
        session of its own, journalled from start to end like any other.
        """
        lifecycle = self._session_running(channel)
        if lifecycle is not None:
            # A verb's steps are durable one by one, like those of a request's verb.
            lifecycle.make_durable()
        own = lifecycle is None or not lifecycle.is_in("started")
        if own:
            lifecycle = Lifecycle("session", uuid.uuid4().hex, self.context.journal)
            lifecycle.fire("start", data={"peer": channel.ip if channel else "", "by_hand": True})
            lifecycle.fire("handshake")
            lifecycle.fire("request", details={"by_hand": True})
        request = Request(self.context, lifecycle, channel, passive, parameters, extra or {})
        try:
            return routine(request)
        finally:
            if own:
                lifecycle.fire("close")
                lifecycle.fire("destroy")
