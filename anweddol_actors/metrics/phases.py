"""A CREATE's clock: where the time of one CREATE goes, phase by phase.

The CREATE flow calls :meth:`CreateClock.lap` at the end of each phase and
:meth:`CreateClock.done` once the response is delivered; only then are the laps observed,
so that the phases of delivered CREATEs add up to their total (a failed CREATE is seen in
the request counters and durations, by its outcome).
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["CreateClock"]


class CreateClock:
    """Started at construction; one lap per phase; observed at :meth:`done`."""

    __slots__ = ("_laps", "_last", "_sink", "_started")

    def __init__(self, sink: Any) -> None:
        """``sink``: the :class:`~anweddol_actors.metrics.Metrics` observing the result."""
        self._sink = sink
        self._started = self._last = time.monotonic()
        self._laps: list[tuple[str, float]] = []

    def lap(self, phase: str) -> None:
        """End ``phase`` now (it began where the previous one ended)."""
        now = time.monotonic()
        self._laps.append((phase, now - self._last))
        self._last = now

    def done(self) -> None:
        """The CREATE was delivered: observe its total and its phases."""
        self._sink.create_observed(self._last - self._started, self._laps)
