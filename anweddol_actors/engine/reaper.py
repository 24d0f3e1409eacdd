"""The reaper: containers whose domain stopped by itself (the guest powered off) are torn
down promptly, their forwarder stopped, port freed and credentials removed.

libvirt's lifecycle events say so at once; a slow poll catches whatever an event missed
(libvirtd restarted, the event thread lagging). Both only *tell* the reaper actor, which
is the server's thread for automatic actions: user handlers run there with
``CONTEXT_AUTOMATIC_ACTION``, never inside an entity actor.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import pykka

from anweddol_actors.engine.events import CONTEXT_AUTOMATIC_ACTION

if TYPE_CHECKING:
    from anweddol_actors.engine.engine import Engine

log = logging.getLogger(__name__)


class ReaperActor(pykka.ThreadingActor):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def reap(self, container_uuid: str) -> bool:
        from anweddol_actors.engine.requests import teardown

        entry = self.engine.registry.pop(container_uuid).get()
        if entry is None:
            return False  # destroyed by its owner meanwhile, or not ours
        log.info("container %s stopped by itself: cleaning up", container_uuid)
        try:
            teardown(self.engine, entry, CONTEXT_AUTOMATIC_ACTION)
        except Exception:
            self.engine.count_runtime_error()
            log.exception("could not clean up container %s", container_uuid)
        return True

    def poll(self) -> None:
        engine = self.engine
        if engine._hypervisor is None:
            return
        for container_uuid in engine.registry.uuids().get():
            try:
                active = engine._hypervisor.is_active(container_uuid)
            except Exception:
                log.exception("could not query domain %s", container_uuid)
                continue
            if not active:
                self.reap(container_uuid)


class Reaper:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._actor = None
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._watching = False

    def start(self) -> None:
        self._actor = ReaperActor.start(self.engine).proxy()
        self._timer = threading.Thread(target=self._tick, name="anweddol-reaper-poll", daemon=True)
        self._timer.start()

    def watch(self, hypervisor) -> None:
        """Subscribe to libvirt's stop events (once the hypervisor connection exists)."""
        if not self._watching and self._actor is not None:
            hypervisor.watch_stops(self._on_domain_stopped)
            self._watching = True

    def _on_domain_stopped(self, container_uuid: str) -> None:
        actor = self._actor
        if actor is not None:
            try:
                actor.reap(container_uuid)  # a tell: the libvirt event thread never waits
            except pykka.ActorDeadError:
                pass

    def _tick(self) -> None:
        while not self._stop.wait(self.engine.settings.reaper_poll_interval):
            try:
                self._actor.poll()
            except pykka.ActorDeadError:
                return

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=5)
        if self._actor is not None:
            self._actor.actor_ref.stop()
            self._actor = None
