"""The forwarders' byte and connection counters, summed over every relay of a server.

Each relay counts for itself (``forwarding.relay.RelayStats``, written by its loop thread
only, so the relay's hot path pays nothing for metrics). A forwarder tells these totals
when its relay starts and when it has ended; an ended relay's final counts are folded
into the totals, so the counters stay monotonic when forwarders go. A relay is counted
either live or folded, never both, under one lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["ForwarderTotals", "ForwarderCounts"]


@dataclass(frozen=True)
class ForwarderCounts:
    bytes_in: int = 0  # client → guest
    bytes_out: int = 0  # guest → client
    accepted: int = 0
    refused: int = 0
    open: int = 0  # connections open now (live relays only)
    forwarders: int = 0  # relays running now


class ForwarderTotals:
    """Live relays plus the folded counts of those that ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[Any] = set()
        self._ended = [0, 0, 0, 0]

    def started(self, relay: Any) -> None:
        """``relay`` (a ``forwarding.relay.Relay``) runs: read live from now on."""
        with self._lock:
            self._live.add(relay)

    def ended(self, relay: Any) -> None:
        """``relay`` stopped (its loop joined): fold its final counts. Idempotent."""
        with self._lock:
            if relay not in self._live:
                return
            self._live.discard(relay)
            stats = relay.stats
            ended = self._ended
            ended[0] += stats.bytes_in
            ended[1] += stats.bytes_out
            ended[2] += stats.accepted
            ended[3] += stats.refused

    def read(self) -> ForwarderCounts:
        with self._lock:
            bytes_in, bytes_out, accepted, refused = self._ended
            opened = 0
            for relay in self._live:
                stats = relay.stats
                bytes_in += stats.bytes_in
                bytes_out += stats.bytes_out
                accepted += stats.accepted
                refused += stats.refused
                opened += relay.connection_count
            return ForwarderCounts(bytes_in, bytes_out, accepted, refused, opened, len(self._live))
