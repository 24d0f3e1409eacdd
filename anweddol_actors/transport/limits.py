"""What the listener admits: connection caps, and logging that a flood cannot multiply.

:class:`ConnectionLimits` counts the client connections open, in all and per address;
past either cap a new one is refused (the listener closes it before anything is read or
journalled). Its refusals are logged through ``logs.RateLimitedLog``: a flood of refused
connections must not become a flood of log lines.
"""

from __future__ import annotations

import logging
import threading

from anweddol_actors.logs.ratelimited import RateLimitedLog

__all__ = ["ConnectionLimits"]


class ConnectionLimits:
    """Open client connections, in all and per address, against their caps (None: no cap).

    :meth:`admit` takes a slot or refuses; every admitted connection gives its slot back
    with :meth:`release` exactly once, when its session ends, whatever way it ends.
    """

    def __init__(
        self,
        max_total: int | None,
        max_per_address: int | None,
        *,
        log: logging.Logger | None = None,
        log_interval: float = 5.0,
    ) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self._lock = threading.Lock()
        self._open = 0
        self._by_address: dict[str, int] = {}
        self.refused = 0  # connections closed at once because of a cap, since the start
        self._log = RateLimitedLog(log or logging.getLogger(__name__), log_interval)

    @property
    def open(self) -> int:
        return self._open

    @property
    def log_lines(self) -> int:
        return self._log.lines

    def open_from(self, address: str) -> int:
        with self._lock:
            return self._by_address.get(address, 0)

    def admit(self, address: str) -> bool:
        """Take a slot for a connection from ``address``; False (counted, logged at a
        bounded rate) when a cap is reached."""
        with self._lock:
            from_address = self._by_address.get(address, 0)
            full = self.max_total is not None and self._open >= self.max_total
            crowded = self.max_per_address is not None and from_address >= self.max_per_address
            if not full and not crowded:
                self._open += 1
                self._by_address[address] = from_address + 1
                return True
            self.refused += 1
            total = self.refused
        why = "max_connections" if full else "max_connections_per_address"
        self._log.warning(
            "refused a connection from %s (%s reached; %d refused in all); refusals since"
            " the last such line: %d",
            address,
            why,
            total,
        )
        return False

    def release(self, address: str) -> None:
        with self._lock:
            count = self._by_address.get(address, 0)
            if count <= 0:
                # A release without its admit would let a flood past the cap: say so.
                raise ValueError(f"release of a connection from {address} never admitted")
            self._open -= 1
            if count == 1:
                del self._by_address[address]
            else:
                self._by_address[address] = count - 1
