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
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pykka


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

    def __init__(self, limit: int | None) -> None:
        super().__init__()
        self.limit = limit
        self.entries: dict[str, LiveContainer] = {}
        self.ending: dict[str, LiveContainer] = {}  # claimed, being torn down
        self.stuck_entries: dict[str, LiveContainer] = {}  # torn down, domain not gone
        self.pending = 0
        self.pooled = 0  # slots held by the warm pool's containers (filling or ready)
        self.closed = False

    def open(self) -> None:
        self.closed = False

    def close(self) -> None:
        """No container may be added from now on (the server is stopping)."""
        self.closed = True

    def reserve_slot(self, pooled: bool = False) -> bool:
        """Claim room for one more container (a CREATE in progress, or with ``pooled``
        a warm pool's fill)."""
        if self.closed:
            return False
        if self.limit is not None and self._used() >= self.limit:
            return False
        if pooled:
            self.pooled += 1
        else:
            self.pending += 1
        return True

    def release_slot(self, pooled: bool = False) -> None:
        """Give back the slot of a CREATE (or a pool's container) whose domain is gone
        (or never existed)."""
        if pooled:
            self.pooled = max(0, self.pooled - 1)
        else:
            self.pending = max(0, self.pending - 1)

    def hand_over(self) -> None:
        """A CREATE took a pooled container: its slot is the CREATE's pending one now."""
        self.pooled = max(0, self.pooled - 1)
        self.pending += 1

    def add(self, entry: LiveContainer) -> bool:
        """Store a container whose CREATE succeeded; its slot becomes an entry.

        False when the server began stopping meanwhile: the caller unwinds the CREATE.
        """
        if self.closed:
            return False
        if entry.uuid in self.entries:
            raise ValueError(f"container {entry.uuid} is already stored")
        self.entries[entry.uuid] = entry
        self.release_slot()
        return True

    def keep_stuck(self, entry: LiveContainer, pooled: bool = False) -> None:
        """A CREATE's (or with ``pooled`` the pool's) container whose domain could not be
        destroyed: its slot stays taken, as a claimed entry the reaper tries to end again."""
        self.release_slot(pooled)
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
        self.ending.pop(container_uuid, None)
        self.stuck_entries.pop(container_uuid, None)

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
        return self.pending

    def pooled_count(self) -> int:
        return self.pooled

    def count(self) -> int:
        return len(self.entries)

    def available(self) -> int | None:
        if self.limit is None:
            return None
        return max(0, self.limit - self._used())

    def _used(self) -> int:
        return (
            len(self.entries)
            + len(self.ending)
            + len(self.stuck_entries)
            + self.pending
            + self.pooled
        )
