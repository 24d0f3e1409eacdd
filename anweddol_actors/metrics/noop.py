"""Metrics that count nothing: the same methods as :class:`Metrics`, each doing nothing.

The default of an engine context made outside a server (tests of one flow), and the
baseline of ``benchmarks/metrics_overhead.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["NoMetrics"]


class _NoClock:
    __slots__ = ()

    def lap(self, phase: str) -> None:
        pass

    def done(self) -> None:
        pass


class _NoForwarders:
    def started(self, relay: Any) -> None:
        pass

    def ended(self, relay: Any) -> None:
        pass


_CLOCK = _NoClock()


class NoMetrics:
    enabled = False
    requests_received = 0
    content_type = "text/plain; charset=utf-8"

    def __init__(self) -> None:
        self.forwarders = _NoForwarders()

    def watch(self, **readings: Any) -> None:
        pass

    def request(self, verb: str | None, outcome: str, seconds: float, transport: str) -> None:
        pass

    def transitions_recorded(self, rows: Iterable[Any]) -> None:
        pass

    def runtime_error(self, kind: str | None) -> None:
        pass

    def create_clock(self) -> _NoClock:
        return _CLOCK

    def create_observed(self, total: float, laps: Iterable[tuple[str, float]]) -> None:
        pass

    def render(self) -> bytes:
        return b""
