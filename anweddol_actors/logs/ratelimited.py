"""Saying a repeated thing rarely: at most one line per interval, carrying the count of
the occurrences folded into it.

A flood (refused connections on the listener or a forwarder, a failing ``accept``, a full
disk under the log file) must not become a flood of lines. :class:`Throttle` decides when
a line is due; :class:`RateLimitedLog` writes that line to a logger. ``trouble.report``
uses the throttle alone, for the problems it cannot send to a logger.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["RateLimitedLog", "Throttle"]


class Throttle:
    """Counts occurrences; lets one through per ``interval`` seconds (the first at once)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last: float | None = None
        self._folded = 0

    def occur(self) -> int | None:
        """Count one occurrence. When a line is due: the occurrences since the last line,
        this one included; else None."""
        now = time.monotonic()
        with self._lock:
            self._folded += 1
            if self._last is not None and now - self._last < self.interval:
                return None
            folded, self._folded, self._last = self._folded, 0, now
        return folded

    def reset(self) -> None:
        """Forget the past: the next occurrence is said at once."""
        with self._lock:
            self._last = None
            self._folded = 0


class RateLimitedLog:
    """At most one warning per ``interval`` seconds; the line says how many were folded."""

    def __init__(self, logger: logging.Logger, interval: float = 5.0) -> None:
        self._logger = logger
        self._throttle = Throttle(interval)
        self.lines = 0  # lines actually written: what a test of the bound reads

    def warning(self, message: str, *args: object) -> bool:
        """Count one occurrence; log it (with the folded count) when the interval allows.

        ``message`` gets one more ``%d`` argument: the occurrences since the last line,
        this one included. Returns True when a line was written.
        """
        folded = self._throttle.occur()
        if folded is None:
            return False
        self.lines += 1
        self._logger.warning(message, *args, folded)
        return True
