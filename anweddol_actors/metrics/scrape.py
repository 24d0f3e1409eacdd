"""The families read at scrape time: what the engine already knows, never counted twice.

Each reading is a callable the engine gives (:meth:`Metrics.watch`); one that fails (the
journal closed, the registry actor gone once the server ended) leaves its family out of
that scrape rather than failing the whole page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from anweddol_actors.metrics.census import CONTAINER_STATES
from anweddol_actors.metrics.forwarders import ForwarderTotals

__all__ = ["EngineReadings"]

log = logging.getLogger(__name__)


class EngineReadings(Collector):
    def __init__(self, forwarders: ForwarderTotals) -> None:
        self._forwarders = forwarders
        self._containers: Callable[[], Mapping[str, int]] | None = None
        self._available: Callable[[], int | None] | None = None
        self._uptime: Callable[[], float] | None = None

    def watch(
        self,
        containers: Callable[[], Mapping[str, int]] | None,
        available: Callable[[], int | None] | None,
        uptime: Callable[[], float] | None,
    ) -> None:
        self._containers = containers
        self._available = available
        self._uptime = uptime

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        counts = _read("containers by state", self._containers)
        if counts is not None:
            family = GaugeMetricFamily(
                "anweddol_containers",
                "Containers not yet destroyed, by the state of their machine (journal)",
                labels=("state",),
            )
            for state in CONTAINER_STATES:
                family.add_metric((state,), counts.get(state, 0))
            yield family
        available = _read("available slots", self._available)
        if available is not None:
            yield GaugeMetricFamily(
                "anweddol_available_slots",
                "Containers that may still be created (absent when there is no limit)",
                value=available,
            )
        uptime = _read("uptime", self._uptime)
        if uptime is not None:
            yield GaugeMetricFamily(
                "anweddol_uptime_seconds", "Seconds since the server started", value=uptime
            )
        counts = self._forwarders.read()
        family = CounterMetricFamily(
            "anweddol_forwarder_bytes",
            "Bytes relayed by the forwarders, by direction",
            labels=("direction",),
        )
        family.add_metric(("client_to_guest",), counts.bytes_in)
        family.add_metric(("guest_to_client",), counts.bytes_out)
        yield family
        yield CounterMetricFamily(
            "anweddol_forwarder_connections",
            "Connections the forwarders admitted and relayed",
            value=counts.accepted,
        )
        yield CounterMetricFamily(
            "anweddol_forwarder_connections_refused",
            "Connections the forwarders closed at once: past a connection limit",
            value=counts.refused,
        )
        yield GaugeMetricFamily(
            "anweddol_forwarder_connections_open",
            "Connections open through the forwarders now",
            value=counts.open,
        )
        yield GaugeMetricFamily(
            "anweddol_forwarders", "Forwarders relaying now", value=counts.forwarders
        )


def _read(what: str, reading: Callable[[], Any] | None) -> Any:
    if reading is None:
        return None
    try:
        return reading()
    except Exception as exc:  # one family left out of this scrape, not the whole page
        log.warning("metrics: %s not read: %s", what, exc)
        return None
