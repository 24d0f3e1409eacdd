"""The reaper: the server's actor for automatic actions.

It ends containers that should not live any more:
- whose domain stopped by itself (the guest powered off): libvirt's lifecycle events say
  so at once, and each tick polls for what an event missed;
- past ``max_lifetime`` (seconds since the CREATE) or ``max_idle_time`` (seconds with no
  connection open through the forwarder);
- whose entity actor failed (supervision: an exception inside a live container's or
  forwarder's actor ends that entity through its machine; the reaper ends the rest);
- whose earlier teardown could not destroy the domain (tried again at each tick).

At every libvirt (re)connection it runs the start's reconciliation if libvirt did not
answer at start, else the after-outage sweep (orphaned domains), then a tick: a domain
that vanished during the outage is reaped, an interrupted teardown finished. While libvirt
is unreachable a tick checks only the lifetimes (which end containers as far as libvirt
allows: the rest is finished at the reconnection).

Timers and libvirt's event thread only *tell* the reaper; every transition happens on the
reaper's own thread, which is the "server's event thread" where automatic-action handlers
run (``CONTEXT_AUTOMATIC_ACTION``), never inside an entity actor.

Per hypervisor host: each host's link tells its own (re)connections (reconciled for that
host), its domains' stop events come from its own connection, and a tick asks each
container's own host (an unreachable host's containers are checked for their lifetimes
only, its stuck teardowns retried once it answers).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterator

import pykka

from anweddol_actors.actors.base import one_line
from anweddol_actors.actors.registry import LiveContainer
from anweddol_actors.engine.context import EngineContext
from anweddol_actors.engine.entities import stop_actor
from anweddol_actors.engine.recovery import after_outage, recover
from anweddol_actors.engine.settings import Settings
from anweddol_actors.engine.verbs import end_live
from anweddol_actors.lifecycle import Transition
from anweddol_actors.lifecycle.events import CONTEXT_AUTOMATIC_ACTION

log = logging.getLogger(__name__)


def limits_left(
    settings: Settings, entry: LiveContainer, now: float
) -> Iterator[tuple[float, str]]:
    """Each lifetime limit that applies to a live container: the seconds left before it
    ends the container (0 or less: due now), and the reason journalled when it does.
    ``now`` is ``time.monotonic()``. The reaper acts on it; ``containers list`` shows it.
    Lazy: the forwarder is asked its idle time only when the lifetime is not due."""
    limit = settings.max_lifetime
    if limit is not None:
        yield limit - (now - entry.created_monotonic), f"max_lifetime of {limit:g} s reached"
    limit = settings.max_idle_time
    if limit is not None:
        left = limit - entry.forwarder.idle_seconds().get()
        yield left, f"max_idle_time of {limit:g} s reached"


class ReaperActor(pykka.ThreadingActor):
    def __init__(self, context: EngineContext) -> None:
        super().__init__()
        self.context = context

    def reap(self, container_uuid: str, details: dict | None = None) -> bool:
        """End one live container through the DESTROY path; False when it is not live."""
        details = details or {"reason": "domain stopped by itself"}
        # None: destroyed by its owner meanwhile, or not ours.
        return end_live(self.context, container_uuid, CONTEXT_AUTOMATIC_ACTION, details) is not None

    def entity_failed(
        self, entity_id: str, kind: str, transition: Transition, exc: BaseException
    ) -> None:
        """An entity actor failed by itself. A CREATE in flight unwinds its own; a live
        container is ended whole, and the error reported once."""
        container_uuid = entity_id.split(".", 1)[0]
        if self.context.registry.get(container_uuid).get() is None:
            return
        self.context.dispatch.report(exc, {}, transition, CONTEXT_AUTOMATIC_ACTION)
        self.reap(container_uuid, {"reason": f"{kind} failed: {one_line(exc)}"})

    def reconnected(self, host: str | None = None) -> None:
        """A host's libvirt answers (again): reconcile what the outage may have left there,
        then tick. ``host``: None for the first host."""
        context = self.context
        try:
            if context.hosts.get(host).recovered.is_set():
                after_outage(context, host)
            elif not recover(context, context.hosts.get(host).name):
                return  # lost again: the next connection tries again
        except Exception as exc:
            log.warning("reconciliation after reconnection failed: %s", one_line(exc))
            return
        self.tick()

    def tick(self) -> None:
        """One round of housekeeping (told by the timer thread)."""
        context = self.context
        now = time.monotonic()
        for entry in context.registry.live().get():
            try:
                details = self._why_end(entry, self._answering(entry.host), now)
            except Exception:
                log.exception("could not check container %s", entry.uuid)
                continue
            if details is not None:
                self.reap(entry.uuid, details)
        for entry in context.registry.stuck().get():
            if self._answering(entry.host) is not None:
                self._retry(entry)

    def _answering(self, host: str):
        """The connection of ``host`` when it answers, else None (unreachable, or a host
        no longer configured: nothing to ask it, nothing to retry yet)."""
        try:
            hypervisor = self.context.hosts.get(host).link.opened
        except KeyError:
            return None
        if hypervisor is not None and not hypervisor.connected:
            return None
        return hypervisor

    def _why_end(self, entry: LiveContainer, hypervisor, now: float) -> dict | None:
        """Why this live container must end now (the journalled details), or None."""
        settings = self.context.settings
        if hypervisor is not None and not hypervisor.is_active(entry.uuid):
            return {"reason": "domain stopped by itself"}
        for left, reason in limits_left(settings, entry, now):
            if left <= 0:
                return {"reason": reason, "expired": True}
        return None

    def _retry(self, entry: LiveContainer) -> None:
        """Try again to destroy a domain an earlier teardown could not."""
        try:
            entry.container.retry_release().get()
        except Exception as exc:
            log.warning("container %s: domain still not destroyed: %s", entry.uuid, one_line(exc))
            return
        log.info("container %s: domain destroyed on retry; its slot is free", entry.uuid)
        stop_actor(entry.container)
        stop_actor(entry.forwarder)
        self.context.registry.free(entry.uuid).get()


class Reaper:
    """The reaper actor plus the timer thread that tells it to tick."""

    def __init__(self, context: EngineContext) -> None:
        self.context = context
        self._actor = None
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._watching: set[str] = set()

    def start(self) -> None:
        self._actor = ReaperActor.start(self.context).proxy()
        self.context.on_entity_failed = self._on_entity_failed
        for host in self.context.hosts:
            host.link.when_connected(functools.partial(self._connected, host.name))
        self._timer = threading.Thread(target=self._tick, name="anweddol-reaper-tick", daemon=True)
        self._timer.start()

    def _connected(self, host: str) -> None:
        """At every (re)connection of a host's libvirt: subscribe to its stop events once
        (the connection registers them again after a loss), and reconcile (on the actor)."""
        if host not in self._watching:
            self._watching.add(host)
            self.context.hosts.get(host).link.get().watch_stops(self._on_domain_stopped)
        self._tell("reconnected", host)

    def _tell(self, method: str, *args) -> None:
        actor = self._actor
        if actor is not None:
            try:
                getattr(actor, method)(*args)  # a tell: the caller never waits
            except pykka.ActorDeadError:
                pass

    def reap_later(self, container_uuid: str, details: dict) -> None:
        """End a live container of ours on the reaper's thread (not live: nothing)."""
        self._tell("reap", container_uuid, details)

    def _on_domain_stopped(self, container_uuid: str) -> None:
        self._tell("reap", container_uuid)

    def _on_entity_failed(self, entity_id, kind, transition, exc) -> None:
        self._tell("entity_failed", entity_id, kind, transition, exc)

    def _tick(self) -> None:
        interval = self._interval()
        while not self._stop.wait(interval):
            self._tell("tick")

    def _interval(self) -> float:
        """The poll interval, shorter when a lifetime is shorter (a 2 s idle limit is not
        enforced 5 s late)."""
        settings = self.context.settings
        limits = [
            value for value in (settings.max_lifetime, settings.max_idle_time) if value is not None
        ]
        return max(0.2, min([settings.reaper_poll_interval, *(v / 4 for v in limits)]))

    def stop(self) -> None:
        self._stop.set()
        self.context.on_entity_failed = None
        if self._timer is not None:
            self._timer.join(timeout=5)
        if self._actor is not None:
            self._actor.actor_ref.stop()
            self._actor = None
