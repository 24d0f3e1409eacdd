"""The supervisor's registry of live containers, and the capacity it enforces.

An actor, so that "is there room?", "add" and "remove" are each atomic without a lock
shared with handlers: two DESTROYs, or a DESTROY and the reaper, racing for the same
container see exactly one winner (the one whose ``pop`` returns the entry).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pykka


@dataclass
class LiveContainer:
    uuid: str
    container: Any  # ContainerActor proxy
    forwarder: Any  # ForwarderActor proxy
    container_instance: Any  # façade handed to handlers
    forwarder_instance: Any
    created: float = field(default_factory=time.time)


class Registry(pykka.ThreadingActor):
    def __init__(self, limit: int | None) -> None:
        super().__init__()
        self.limit = limit
        self.entries: dict[str, LiveContainer] = {}
        self.pending = 0

    def reserve_slot(self) -> bool:
        """Claim room for one more container (a CREATE in progress)."""
        if self.limit is not None and len(self.entries) + self.pending >= self.limit:
            return False
        self.pending += 1
        return True

    def release_slot(self) -> None:
        self.pending = max(0, self.pending - 1)

    def add(self, entry: LiveContainer) -> None:
        """Store a container whose CREATE succeeded; its slot becomes an entry."""
        if entry.uuid in self.entries:
            raise ValueError(f"container {entry.uuid} is already stored")
        self.entries[entry.uuid] = entry
        self.release_slot()

    def pop(self, container_uuid: str) -> LiveContainer | None:
        return self.entries.pop(container_uuid, None)

    def get(self, container_uuid: str) -> LiveContainer | None:
        return self.entries.get(container_uuid)

    def uuids(self) -> list[str]:
        return list(self.entries)

    def pending_count(self) -> int:
        return self.pending

    def count(self) -> int:
        return len(self.entries)

    def available(self) -> int | None:
        if self.limit is None:
            return None
        return max(0, self.limit - len(self.entries) - self.pending)
