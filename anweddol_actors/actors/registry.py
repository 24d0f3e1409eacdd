"""The supervisor's registry of live containers, and the capacity it enforces.

An actor, so that "is there room?", "add" and "remove" are each atomic without a lock
shared with handlers: two DESTROYs, or a DESTROY and the reaper, racing for the same
container see exactly one winner (the one whose ``claim`` returns the entry).

A slot is taken when a CREATE begins and given back only when its domain is known to be
gone (``release_slot``, ``free``): a container whose teardown failed keeps its slot, so
capacity never promises a VM that libvirt still runs.

A warm pool's containers hold slots of their own (``reserve_slot(pooled=True)``): they
count against the limit like any container, and a CREATE that takes one turns its slot
into an ordinary pending one (``hand_over``), so from then on it is a CREATE like any.

Slots are counted per hypervisor host too: a slot is claimed on one host
(``reserve_slot(host)``), under both that host's ``max_containers`` and the server-wide
limit, in one step of this actor — two CREATEs placed on the same last slot of a host
see one winner, and the loser tries its next candidate (engine/placement.py).

Front ends sharing hosts (several ``serve`` processes on one PostgreSQL journal) share
their capacity too (``shared``): a slot is claimed in the journal as well, in the same
step, atomically against the other front ends' slots (``SharedCapacity.claim``), and each
change of this front end's count on a host is written there (``report``). Counts, not
claims per container: each write is this front end's whole figure for the host, so a
write lost to an error is made good by the next, and a crash's leftover by the restart.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import pykka

from anweddol_actors.errors import AnweddolError

log = logging.getLogger(__name__)


class SharedCapacity(Protocol):
    """The hosts' slots as every front end sees them (engine/frontends.py over the
    journal)."""

    def claim(self, host: str, used_after: int, limit: int | None) -> bool:
        """Hold ``used_after`` slots on ``host`` if the others' and those fit ``limit``."""

    def report(self, host: str, used: int) -> None:
        """This front end holds ``used`` slots on ``host`` now."""


@dataclass
class LiveContainer:
    """A container whose CREATE completed: its actors' proxies and its limits."""

    uuid: str
    container: Any  # ContainerActor proxy
    forwarder: Any  # ForwarderActor proxy
    client_ip: str = ""
    # The hypervisor host it runs on (engine ``Settings.host_list()``; "local" is the name
    # of the one host of a server without a ``hypervisors:`` list).
    host: str = "local"
    created: float = field(default_factory=time.time)
    created_monotonic: float = field(default_factory=time.monotonic)


class Registry(pykka.ThreadingActor):
    # It lives from the server's construction to its ``close()``, holds nothing outside the
    # process, and a seed script that ends after ``stopServer()`` (as the original's do)
    # must not hang at exit waiting for it.
    use_daemon_thread = True

    def __init__(
        self,
        limit: int | None,
        host_limits: dict[str, int | None] | None = None,
        shared: SharedCapacity | None = None,
    ) -> None:
        """``limit``: the server-wide cap; ``host_limits``: each host's own (None: no
        limit of its own), the first host being the default (none given: one host,
        "local", under ``limit``); ``shared``: the hosts' capacity shared with other
        front ends (None: this server is the hosts' only user)."""
        super().__init__()
        self.shared = shared
        # The slots the other front ends hold, per host, as last read (a claim reads the
        # exact figure; STAT and ``hosts list`` may be a renewal tick behind).
        self.others: dict[str, int] = {}
        self.limit = limit
        self.host_limits: dict[str, int | None] = dict(host_limits or {"local": limit})
        self.first_host = next(iter(self.host_limits))
        self.entries: dict[str, LiveContainer] = {}
        self.ending: dict[str, LiveContainer] = {}  # claimed, being torn down
        self.stuck_entries: dict[str, LiveContainer] = {}  # torn down, domain not gone
        self.pending_by_host: Counter[str] = Counter()
        # Slots held by the warm pools' containers (filling or ready), per host.
        self.pooled_by_host: Counter[str] = Counter()
        self.closed = False

    def open(self) -> None:
        self.closed = False

    def close(self) -> None:
        """No container may be added from now on (the server is stopping)."""
        self.closed = True

    def reserve_slot(self, host: str | None = None, pooled: bool = False) -> bool:
        """Claim room for one more container on ``host`` (None: the first host): a CREATE
        in progress, or with ``pooled`` a warm pool's fill. False when the host or the
        server is full (or the server stops, or the host is unknown)."""
        host = host or self.first_host
        if self.closed or host not in self.host_limits:
            return False
        if self.limit is not None and self._used() >= self.limit:
            return False
        host_limit = self.host_limits[host]
        if host_limit is not None and self._used(host) >= host_limit:
            return False
        if self.shared is not None and not self._claim_shared(host, host_limit):
            return False
        if pooled:
            self.pooled_by_host[host] += 1
        else:
            self.pending_by_host[host] += 1
        return True

    def release_slot(self, pooled: bool = False, host: str | None = None) -> None:
        """Give back the slot of a CREATE (or a pool's container) whose domain is gone
        (or never existed)."""
        counts = self.pooled_by_host if pooled else self.pending_by_host
        host = host or self.first_host
        counts[host] = max(0, counts[host] - 1)
        self._report_shared(host)

    def hand_over(self, host: str | None = None) -> None:
        """A CREATE took a pooled container: its slot is the CREATE's pending one now."""
        host = host or self.first_host
        self.pooled_by_host[host] = max(0, self.pooled_by_host[host] - 1)
        self.pending_by_host[host] += 1

    def add(self, entry: LiveContainer) -> bool:
        """Store a container whose CREATE succeeded; its slot becomes an entry.

        False when the server began stopping meanwhile: the caller unwinds the CREATE.
        """
        if self.closed:
            return False
        if entry.uuid in self.entries:
            raise ValueError(f"container {entry.uuid} is already stored")
        self.entries[entry.uuid] = entry
        self.release_slot(host=entry.host)
        return True

    def keep_stuck(self, entry: LiveContainer, pooled: bool = False) -> None:
        """A CREATE's (or with ``pooled`` the pool's) container whose domain could not be
        destroyed: its slot stays taken, as a claimed entry the reaper tries to end again."""
        self.release_slot(pooled, entry.host)
        self.stuck_entries[entry.uuid] = entry

    def mark_stuck(self, container_uuid: str) -> None:
        """A claimed container's teardown ended without destroying its domain."""
        entry = self.ending.pop(container_uuid, None)
        if entry is not None:
            self.stuck_entries[container_uuid] = entry

    def claim(self, container_uuid: str) -> LiveContainer | None:
        """Take a container out of service for its teardown: exactly one caller gets it.
        Its slot stays counted until :meth:`free`."""
        entry = self.entries.pop(container_uuid, None)
        if entry is not None:
            self.ending[container_uuid] = entry
        return entry

    def free(self, container_uuid: str) -> None:
        """The claimed container's domain is gone: its slot is free."""
        entry = self.ending.pop(container_uuid, None)
        entry = self.stuck_entries.pop(container_uuid, None) or entry
        if entry is not None:
            self._report_shared(entry.host)

    def stuck(self) -> list[LiveContainer]:
        """Containers whose teardown could not destroy the domain (never those still
        being torn down: their teardown owns them)."""
        return list(self.stuck_entries.values())

    def get(self, container_uuid: str) -> LiveContainer | None:
        return self.entries.get(container_uuid)

    def live(self) -> list[LiveContainer]:
        return list(self.entries.values())

    def uuids(self) -> list[str]:
        return list(self.entries)

    def pending_count(self) -> int:
        return sum(self.pending_by_host.values())

    def pooled_count(self) -> int:
        return sum(self.pooled_by_host.values())

    def count(self) -> int:
        return len(self.entries)

    def available(self, hosts: list[str] | None = None) -> int | None:
        """The free slots of ``hosts`` (None: every host), capped by the server-wide
        limit; None when neither limits them."""
        hosts = list(self.host_limits) if hosts is None else hosts
        free: int | None = 0
        for host in hosts:
            if host not in self.host_limits:
                continue
            host_free = self.host_free(host)
            free = None if free is None or host_free is None else free + host_free
        if self.limit is None:
            return free
        total_free = max(0, self.limit - self._used())
        return total_free if free is None else min(free, total_free)

    def host_free(self, host: str) -> int | None:
        """The free slots of one host under its own limit (None: it has none), less
        those the other front ends hold there."""
        host_limit = self.host_limits.get(host)
        if host_limit is None:
            return None
        return max(0, host_limit - self._used(host) - self.others.get(host, 0))

    def set_others(self, others: dict[str, int]) -> None:
        """The slots the other front ends hold per host, freshly read."""
        self.others = dict(others)

    def report_all(self) -> None:
        """Write this front end's slots on every host to the shared table (at start,
        after the reconciliation: what a crash left there is replaced)."""
        for host in self.host_limits:
            self._report_shared(host)

    def _claim_shared(self, host: str, host_limit: int | None) -> bool:
        """Claim one more slot on ``host`` against the other front ends: atomic in the
        journal, so two front ends racing for the last slot cannot both win."""
        assert self.shared is not None
        try:
            return self.shared.claim(host, self._used(host) + 1, host_limit)
        except AnweddolError as exc:
            # No claim, no container: the CREATE tries the next host, then answers
            # Unavailable; the journal's own error says why.
            log.warning("host %s: cannot claim capacity: %s", host, exc)
            return False

    def _report_shared(self, host: str) -> None:
        if self.shared is None:
            return
        try:
            self.shared.report(host, self._used(host))
        except AnweddolError as exc:
            # The slot is free here; the shared figure stays one high until the next
            # report (any release, or the renewal tick's), which is safe: too few
            # CREATEs for a moment, never too many.
            log.warning("host %s: cannot report capacity: %s", host, exc)

    def host_usage(self) -> dict[str, dict[str, int | None]]:
        """Per host: ``containers`` (live ones, and those being or failing to be torn
        down), ``used`` (every slot it holds: those plus CREATEs in flight and pooled
        ones) and ``free`` (under its own limit; None: no limit of its own)."""
        return {
            host: {
                "containers": sum(1 for entry in self._holding() if entry.host == host),
                "used": self._used(host),
                "free": self.host_free(host),
            }
            for host in self.host_limits
        }

    def total_free(self) -> int | None:
        """The free slots under the server-wide limit alone (None: no such limit)."""
        return None if self.limit is None else max(0, self.limit - self._used())

    def _holding(self) -> list[LiveContainer]:
        return [*self.entries.values(), *self.ending.values(), *self.stuck_entries.values()]

    def _used(self, host: str | None = None) -> int:
        """The slots taken on ``host`` (None: on the whole server)."""
        if host is None:
            return len(self._holding()) + self.pending_count() + self.pooled_count()
        return (
            sum(1 for entry in self._holding() if entry.host == host)
            + self.pending_by_host[host]
            + self.pooled_by_host[host]
        )
