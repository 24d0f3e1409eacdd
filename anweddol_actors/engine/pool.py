"""The warm pool: containers booted and administered ahead of demand, handed over by CREATE.

One background thread keeps ``warm_pool_size`` containers ready, filling one at a time
(on two cores a second boot in parallel only slows the first). A fill takes a capacity
slot of the pool's (``Registry.reserve_slot(pooled=True)``), so pooled containers count
against ``max_containers`` and a fill starts only when a slot is free; it runs CREATE's
own steps (``create.fill``): fresh random credentials set in the guest, the forwarder's
port reserved but not relaying, the container journalled ``started_pooled``.

A CREATE takes a ready one (:meth:`Pool.take`) under the pool's lock, so no two CREATEs
get the same; its lifetime and idle time start when the CREATE registers it. When none is
ready but one is filling, the CREATE waits for that one (bounded by ``ready_timeout``)
rather than boot its own: the filling one started booting earlier, so it is ready no
later than a cold boot started now, and no second boot competes for the CPU. When none is
ready nor filling, the CREATE boots one as without a pool.

A failed fill is unwound and journalled by CREATE's unwind, logged once, and retried
after a backoff that doubles up to :data:`BACKOFF_MAX`. The server's stop ends the fill in
flight at its next step and the ready containers (journalled), waiting a bounded time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from anweddol_actors.actors.base import one_line
from anweddol_actors.engine.context import EngineContext
from anweddol_actors.engine.create import Pooled, discard, fill

log = logging.getLogger(__name__)

# The first retry's delay after a failed fill, and the most it grows to.
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
# How often the pool looks again for a free slot, or for libvirt, when it has none.
IDLE_LOOK = 1.0
# The most a stop waits for the fill in flight to unwind (it checks the stop every 2 s).
STOP_GRACE = 30.0


class Pool:
    def __init__(self, context: EngineContext, size: int) -> None:
        self.context = context
        self.size = size
        self._cond = threading.Condition()
        self._ready: deque[Pooled] = deque()
        self._filling = 0
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what CREATE, STAT and status ask ------------------------------------------------

    def take(self, timeout: float | None = None) -> Pooled | None:
        """A ready pooled container, now the caller's alone; None when none is ready nor
        filling (or the wait for the filling one ended without one, or the server stops).
        ``timeout``: the most to wait for a filling one (default ``ready_timeout``)."""
        if timeout is None:
            timeout = self.context.settings.ready_timeout or 120.0
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._ready:
                    pooled = self._ready.popleft()
                    self._cond.notify_all()  # the filler: room for another one
                    return pooled
                left = deadline - time.monotonic()
                stopping = self._stopped.is_set() or self.context.stopping.is_set()
                if not self._filling or left <= 0 or stopping:
                    return None
                self._cond.wait(min(left, IDLE_LOOK))

    def ready_count(self) -> int:
        with self._cond:
            return len(self._ready)

    def status(self) -> dict[str, int]:
        """``size``, ``ready`` and ``filling``: what ``status`` shows."""
        with self._cond:
            return {"size": self.size, "ready": len(self._ready), "filling": self._filling}

    # -- start and stop ------------------------------------------------------------------

    def start(self) -> None:
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, name="warm-pool", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_GRACE) -> None:
        """End the fill in flight (it unwinds at its next step: the server's ``stopping``
        is set first) and every ready container, journalled; bounded by ``timeout``."""
        self._stopped.set()
        with self._cond:
            self._cond.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.error("warm pool: the fill in flight did not end within %.0f s", timeout)
        with self._cond:
            ready, self._ready = list(self._ready), deque()
            self._cond.notify_all()
        for pooled in ready:
            self._discard(pooled, "server stopping")

    # -- the filler ----------------------------------------------------------------------

    def _run(self) -> None:
        log.info("warm pool: keeping %d container(s) ready", self.size)
        while not self._stopped.is_set():
            try:
                self._fill_until_stopped()
                return
            except Exception:
                # A bug of ours must not end the pool silently: said, then tried again.
                log.exception("warm pool: unexpected error; filling again in %.0f s", BACKOFF_MAX)
                self._stopped.wait(BACKOFF_MAX)

    def _fill_until_stopped(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            if not self._wants_one() or not self._slot_taken():
                continue
            try:
                pooled = fill(self.context)
            except Exception as exc:
                self._filled(None)
                if self._stopped.is_set() or self.context.stopping.is_set():
                    return
                failures += 1
                delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1))
                log.warning(
                    "warm pool: a fill failed (%s); next try in %.0f s", one_line(exc), delay
                )
                self._stopped.wait(delay)
                continue
            failures = 0
            if not self._filled(pooled):
                self._discard(pooled, "server stopping")
                return
            log.info("warm pool: container %s ready", pooled.uuid)

    def _wants_one(self) -> bool:
        """Whether a fill is due: room in the pool, libvirt reconciled and answering.
        Waits (bounded) when not, so the loop never spins."""
        with self._cond:
            if len(self._ready) + self._filling >= self.size:
                self._cond.wait(IDLE_LOOK)
                return False
        if not self.context.hypervisor_ready():
            self._stopped.wait(IDLE_LOOK)
            return False
        return True

    def _slot_taken(self) -> bool:
        """Take a capacity slot for a fill (counted as filling from then on); waits
        (bounded) when the server is full."""
        with self._cond:
            # Counted before the slot is asked for: a CREATE that finds the pool empty
            # meanwhile waits for this fill rather than take the slot it needs.
            self._filling += 1
        try:
            taken = self.context.registry.reserve_slot(pooled=True).get()
        except Exception:
            self._filled(None)
            raise
        if taken:
            return True
        self._filled(None)
        self._stopped.wait(IDLE_LOOK)
        return False

    def _filled(self, pooled: Pooled | None) -> bool:
        """A fill ended (``pooled``: its container, else it failed); False when the pool
        stopped meanwhile (the caller then ends the container)."""
        with self._cond:
            self._filling -= 1
            self._cond.notify_all()
            if pooled is None:
                return True
            if self._stopped.is_set():
                return False
            self._ready.append(pooled)
            return True

    def _discard(self, pooled: Pooled, reason: str) -> None:
        try:
            discard(self.context, pooled, reason)
        except Exception:
            log.exception("warm pool: container %s not ended", pooled.uuid)
