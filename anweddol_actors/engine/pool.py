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

Each hypervisor host has its own pool of ``warm_pool_size`` (:class:`Pools` holds them):
a host's pool fills only while the host is enabled and ready, its slots counted on that
host. A CREATE takes a ready container from the best open host that has one (placement's
order), else waits for one filling on an open host, else boots its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from anweddol_actors.actors.base import one_line
from anweddol_actors.engine.context import EngineContext
from anweddol_actors.engine.create import Pooled, discard, fill
from anweddol_actors.engine.placement import ranked, views

log = logging.getLogger(__name__)

# The first retry's delay after a failed fill, and the most it grows to.
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
# How often the pool looks again for a free slot, or for libvirt, when it has none.
IDLE_LOOK = 1.0
# The most a stop waits for the fill in flight to unwind (it checks the stop every 2 s).
STOP_GRACE = 30.0


class Pool:
    """One host's warm pool (``host``: None for the first host)."""

    def __init__(self, context: EngineContext, size: int, host: str | None = None) -> None:
        self.context = context
        self.size = size
        self.host = host or context.hosts.first.name
        self._cond = threading.Condition()
        self._ready: deque[Pooled] = deque()
        self._filling = 0
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what CREATE, STAT and status ask ------------------------------------------------

    def filling(self) -> int:
        with self._cond:
            return self._filling

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
        self._thread = threading.Thread(
            target=self._run, name=f"warm-pool-{self.host}", daemon=True
        )
        self._thread.start()

    def begin_stop(self) -> None:
        """Tell the filler to end, without waiting (``stop`` waits)."""
        self._stopped.set()

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
        log.info("warm pool: keeping %d container(s) ready on %s", self.size, self.host)
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
                pooled = fill(self.context, self.host)
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
        """Whether a fill is due: room in the pool, the host enabled, reconciled and
        answering. Waits (bounded) when not, so the loop never spins."""
        with self._cond:
            if len(self._ready) + self._filling >= self.size:
                self._cond.wait(IDLE_LOOK)
                return False
        context = self.context
        if not context.hypervisor_ready(self.host) or not context.journal.host_enabled(self.host):
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
            taken = self.context.registry.reserve_slot(self.host, pooled=True).get()
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


class Pools:
    """The warm pools of every host, seen by CREATE, STAT and ``status`` as one."""

    def __init__(self, context: EngineContext, size: int) -> None:
        self.context = context
        self.size = size
        self.pools = {host.name: Pool(context, size, host.name) for host in context.hosts}

    def take(self, timeout: float | None = None) -> Pooled | None:
        """A ready pooled container of an open host (the best first, in placement's
        order), now the caller's alone; else one filling on an open host, waited for
        (``timeout``, as :meth:`Pool.take`); None when there is neither."""
        open_hosts = set(self.context.open_hosts())
        order = [
            view.name
            for view in ranked(views(self.context, memory=False))
            if view.name in open_hosts
        ]
        for name in order:
            pooled = self.pools[name].take(timeout=0)
            if pooled is not None:
                return pooled
        for name in order:
            if self.pools[name].filling():
                return self.pools[name].take(timeout)
        return None

    def ready_count(self, hosts: list[str] | None = None) -> int:
        """The ready containers of ``hosts`` (None: of every host)."""
        names = self.pools if hosts is None else hosts
        return sum(self.pools[name].ready_count() for name in names if name in self.pools)

    def status(self) -> dict[str, int]:
        """``size``, ``ready`` and ``filling`` summed over the hosts: what ``status`` shows."""
        total = {"size": 0, "ready": 0, "filling": 0}
        for pool in self.pools.values():
            for key, value in pool.status().items():
                total[key] += value
        return total

    def start(self) -> None:
        for pool in self.pools.values():
            pool.start()

    def stop(self, timeout: float = STOP_GRACE) -> None:
        # Every fill told to end first, so the pools' bounded waits run side by side.
        for pool in self.pools.values():
            pool.begin_stop()
        for pool in self.pools.values():
            pool.stop(timeout)
