"""A hypervisor host unreachable past a grace period: its containers are ``lost``.

One :class:`HostWatch` per host. Its thread looks at the host's libvirt link every
:func:`poll_interval` seconds. When the link has been unreachable *continuously* for
longer than ``Settings.host_lost_grace`` (:class:`Outage` keeps that arithmetic), every
live container on that host (``LiveContainer.host``) is claimed from the registry and, in
this order:

1. its machine fires ``lose`` (journalled, with ``{"host", "unreachable_for"}``): the
   machines govern, nothing is done before the journal says so;
2. its credentials are deleted: a DESTROY, or any request with its token, is refused as
   for an unknown container;
3. its forwarder is stopped (journalled, ``on_forwarder_stopped``): its port is free;
4. ``on_container_domain_stopped`` fires, backed by the ``lose`` transition
   (lifecycle/events.py says why this event);
5. its actors end (a lost container's actor does not try to destroy the domain) and its
   slot is given back (``Registry.free``); one log line says so.

The warm pool's ready containers on the host end the same way (their pool slot given
back). While the host stays away the watcher sweeps again at each look, so a CREATE or a
fill that completed meanwhile is not left behind.

When the link is back (``when_connected`` wakes the thread), the leftover domains of the
host's lost containers are destroyed and each is journalled ``lost → destroyed``, read
from the journal, so the lost containers of a stopped and restarted server are found too
(though the start's reconciliation usually ends them first). A lost container is never
adopted, whatever ``on_start_live_containers`` says: its client's token was revoked and
its forwarder's port freed (perhaps reused since) when it was lost, so nobody could reach
or end it. A destroy that fails leaves the container ``lost`` and is tried again
:data:`LEFTOVER_RETRY` seconds later while the host answers, and at every reconnection.

Everything runs on the watcher's own thread, which is a server thread like the reaper's
(automatic-action handlers run there, ``CONTEXT_AUTOMATIC_ACTION``), never inside an
entity actor. Every wait is bounded; :meth:`HostWatch.stop` joins the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from anweddol_actors.actors.base import one_line
from anweddol_actors.actors.registry import LiveContainer
from anweddol_actors.engine.context import EngineContext
from anweddol_actors.engine.create import discard
from anweddol_actors.engine.entities import stop_actor
from anweddol_actors.engine.verbs import teardown
from anweddol_actors.lifecycle import Lifecycle
from anweddol_actors.lifecycle.events import (
    CONTEXT_AUTOMATIC_ACTION,
    EVENT_CONTAINER_DOMAIN_STOPPED,
    EVENT_FORWARDER_STOPPED,
)

log = logging.getLogger(__name__)

# The most an actor is waited for while a container is lost (its ``lose``, its forwarder's
# stop): the actors answer at once unless something is badly wrong.
ACTOR_WAIT = 30.0
# Seconds between two tries at destroying the leftover domains while the host answers.
LEFTOVER_RETRY = 30.0
# How long stop() waits for the watcher's thread.
STOP_WAIT = 60.0


def poll_interval(grace: float) -> float:
    """How often the link is looked at: a quarter of the grace (a 2 s grace is not
    honoured 1 s late), at most once a second and at least every 0.1 s."""
    return min(1.0, max(0.1, grace / 4))


class Outage:
    """When a host's link has been unreachable continuously for longer than ``grace``.

    Fed one observation at a time (:meth:`observe`, with ``time.monotonic()``); a single
    reachable observation ends the outage, so only a continuous one counts.
    """

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.since: float | None = None  # first unreachable look of the current outage

    def observe(self, reachable: bool, now: float) -> float | None:
        """Seconds unreachable so far when that is past the grace, else None."""
        if reachable:
            self.since = None
            return None
        if self.since is None:
            self.since = now
        unreachable_for = now - self.since
        return unreachable_for if unreachable_for > self.grace else None


class HostWatch:
    """Watches one host's link (``link``: ``.reachable()``, ``.when_connected(cb)``,
    ``.get()``); ``grace`` defaults to ``Settings.host_lost_grace`` (None: never)."""

    def __init__(
        self,
        context: EngineContext,
        host_name: str,
        link: Any,
        grace: float | None = None,
    ) -> None:
        self.context = context
        self.host = host_name
        self.link = link
        self.grace = context.settings.host_lost_grace if grace is None else grace
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        # Whether the host is declared lost now (past the grace, not back yet).
        self.lost = threading.Event()
        # When the leftover domains are next tried (monotonic); None: nothing to try.
        self._leftovers_due: float | None = None

    # -- start and stop ------------------------------------------------------------------

    def start(self) -> None:
        if self.grace is None:
            log.info("host %s: never declared lost (host_lost_grace is null)", self.host)
            return
        self._stop.clear()
        # Leftovers of an earlier run (lost containers it could not end) are tried once
        # the host answers.
        self._leftovers_due = 0.0
        self.link.when_connected(self._wake.set)
        self._thread = threading.Thread(
            target=self._run, name=f"anweddol-hostwatch-{self.host}", daemon=True
        )
        self._thread.start()

    @property
    def watching(self) -> bool:
        """Whether the watcher's thread runs (not with a null grace, nor once stopped)."""
        return self._thread is not None

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(STOP_WAIT)
            if thread.is_alive():
                log.error("host %s: the watcher did not stop within %.0f s", self.host, STOP_WAIT)

    # -- the watcher's thread ------------------------------------------------------------

    def _run(self) -> None:
        assert self.grace is not None
        outage = Outage(self.grace)
        interval = poll_interval(self.grace)
        while not self._stop.is_set():
            try:
                self._look(outage)
            except Exception:
                # A bug of ours must not end the watch silently: said, then looked at again.
                log.exception("host %s: the watcher's look failed", self.host)
            self._wake.wait(interval)
            self._wake.clear()

    def _look(self, outage: Outage) -> None:
        reachable = self.link.reachable()
        unreachable_for = outage.observe(reachable, time.monotonic())
        if unreachable_for is not None:
            if not self.lost.is_set():
                self.lost.set()
                log.warning(
                    "host %s unreachable for %.1f s (grace %g s): its containers are lost",
                    self.host,
                    unreachable_for,
                    self.grace,
                )
            self._lose_all(unreachable_for)
            return
        if not reachable:
            return
        if self.lost.is_set():
            self.lost.clear()
            log.warning("host %s answers again: destroying its lost containers' domains", self.host)
            self._leftovers_due = 0.0
        due = self._leftovers_due
        if due is not None and time.monotonic() >= due:
            self._leftovers_due = self._destroy_leftovers()

    # -- losing ----------------------------------------------------------------------------

    def _lose_all(self, unreachable_for: float) -> None:
        registry = self.context.registry
        for entry in registry.live().get(timeout=ACTOR_WAIT):
            if entry.host != self.host or self._stop.is_set():
                continue
            claimed = registry.claim(entry.uuid).get(timeout=ACTOR_WAIT)
            if claimed is None:
                continue  # a DESTROY or the reaper has it
            try:
                self._lose(claimed, unreachable_for)
            except Exception as exc:
                log.error("container %s: could not be declared lost: %s", entry.uuid, one_line(exc))
                # Ended the ordinary way instead: a domain that cannot be destroyed now
                # keeps the slot and is the reaper's to retry, as for any teardown.
                teardown(
                    self.context,
                    claimed,
                    CONTEXT_AUTOMATIC_ACTION,
                    details={"reason": f"host {self.host} unreachable"},
                )
            else:
                # Outside _lose: a slot is freed only once everything above was done.
                registry.free(entry.uuid).get(timeout=ACTOR_WAIT)
        for pooled in self._pooled_on_host():
            try:
                self._lose_pooled(pooled, unreachable_for)
            except Exception as exc:
                log.error(
                    "container %s: could not be declared lost: %s", pooled.uuid, one_line(exc)
                )
                # Out of its pool already: ended as a failed fill is (its actors stopped,
                # its slot given back once its domain is gone), not left to leak.
                discard(self.context, pooled, f"host {self.host} unreachable")
            else:
                registry.release_slot(pooled=True, host=self.host).get(timeout=ACTOR_WAIT)

    def _lose(self, entry: LiveContainer, unreachable_for: float) -> None:
        context = self.context
        port = entry.forwarder.port.get(timeout=ACTOR_WAIT)
        lose = entry.container.mark_lost(self.host, unreachable_for, CONTEXT_AUTOMATIC_ACTION)
        transition = lose.get(timeout=ACTOR_WAIT)
        # The token stops working at once: its container will not come back.
        context.journal.delete_credentials(entry.uuid)
        self._stop_forwarder(entry.forwarder)
        context.dispatch.emit_contained(
            transition,
            EVENT_CONTAINER_DOMAIN_STOPPED,
            CONTEXT_AUTOMATIC_ACTION,
            {"container": entry.container},
        )
        stop_actor(entry.forwarder)
        stop_actor(entry.container)
        log.warning(
            "container %s lost: host %s unreachable for %.1f s; credentials revoked, port %s freed",
            entry.uuid,
            self.host,
            unreachable_for,
            port,
        )

    def _pooled_on_host(self) -> list[Any]:
        """Take the warm pool's ready containers on this host out of its pool (each host
        has a pool of its own: ``Pools.pools``)."""
        pools = self.context.pool
        taken: list[Any] = []
        pool = None if pools is None else pools.pools.get(self.host)
        if pool is None:
            return taken
        while not self._stop.is_set():
            pooled = pool.take(timeout=0)  # a ready one at once, never a wait for a fill
            if pooled is None:
                return taken
            taken.append(pooled)
        return taken

    def _lose_pooled(self, pooled: Any, unreachable_for: float) -> None:
        pooled.container.mark_lost(self.host, unreachable_for, CONTEXT_AUTOMATIC_ACTION).get(
            timeout=ACTOR_WAIT
        )
        # No credentials were stored for it (no client held it); its forwarder's port was
        # reserved, not relaying.
        self._stop_forwarder(pooled.forwarder)
        stop_actor(pooled.forwarder)
        stop_actor(pooled.shell)
        stop_actor(pooled.container)
        log.warning(
            "container %s lost (warm pool): host %s unreachable for %.1f s",
            pooled.uuid,
            self.host,
            unreachable_for,
        )

    def _stop_forwarder(self, forwarder: Any) -> None:
        """Stop the forwarder (journalled by its actor) and fire ``on_forwarder_stopped``
        when it was relaying; a forwarder that cannot be stopped is said and left to its
        actor's end (which releases its port whatever happens)."""
        try:
            transition = forwarder.stop_forwarding(CONTEXT_AUTOMATIC_ACTION).get(timeout=ACTOR_WAIT)
        except Exception as exc:
            log.error("a lost container's forwarder did not stop: %s", one_line(exc))
            return
        if transition is not None:
            self.context.dispatch.emit_contained(
                transition,
                EVENT_FORWARDER_STOPPED,
                CONTEXT_AUTOMATIC_ACTION,
                {"forwarder": forwarder},
            )

    # -- the host is back ------------------------------------------------------------------

    def lost_here(self) -> list[dict]:
        """The journal's lost containers on this host (their entity rows)."""
        return [
            row
            for row in self.context.journal.live_entities(kind="container")
            if row["state"] == "lost" and row["data"].get("host", "local") == self.host
        ]

    def _destroy_leftovers(self) -> float | None:
        """Destroy the domains of this host's lost containers, each journalled ``lost →
        destroyed`` once libvirt said it is gone. When the next try is due (None: done)."""
        rows = self.lost_here()
        if not rows:
            return None
        left = 0
        for row in rows:
            if self._stop.is_set() or not self.link.reachable():
                return 0.0  # at the next reconnection
            container_uuid = row["entity_id"]
            try:
                existed = self.link.get().destroy_domain(container_uuid)
            except Exception as exc:
                left += 1
                log.warning(
                    "container %s (lost): leftover domain not destroyed, tried again in %.0f s: %s",
                    container_uuid,
                    LEFTOVER_RETRY,
                    one_line(exc),
                )
                continue
            lifecycle = Lifecycle(
                "container", container_uuid, self.context.journal, row["data"], state="lost"
            )
            reason = "leftover domain destroyed" if existed else "no leftover domain"
            lifecycle.fire(
                "destroy",
                context=CONTEXT_AUTOMATIC_ACTION,
                details={"reason": f"host {self.host} back: {reason}"},
            )
            log.info("container %s (lost): host %s back, %s", container_uuid, self.host, reason)
        return time.monotonic() + LEFTOVER_RETRY if left else None
