"""The server's metrics, on the Prometheus project's own client library.

One :class:`Metrics` per engine server, each with its own ``CollectorRegistry`` (several
servers run in one process in the tests: nothing goes to the library's global registry).
Every family is named ``anweddol_*``. What changes on the hot path (a request, a journalled
transition, a CREATE's phase) is counted through label children bound in advance; what
the engine already knows (containers by state, free slots, uptime, the forwarders' byte
and connection counters) is read at scrape time. :class:`NoMetrics` has the same methods
and does nothing (the baseline of ``benchmarks/metrics_overhead.py``).

Modules: ``families`` (the :class:`Metrics` object), ``phases`` (a CREATE's clock),
``forwarders`` (the relays' counters, kept monotonic as forwarders end), ``census``
(containers by state, read from the journal), ``scrape`` (the collector of scrape-time
families), ``noop`` (:class:`NoMetrics`).

Bottom layer: imports journal, lifecycle, protocol and errors, never the engine.
"""

from anweddol_actors.metrics.census import CONTAINER_STATES, containers_by_state
from anweddol_actors.metrics.families import (
    CREATE_PHASES,
    OUTCOMES,
    Metrics,
)
from anweddol_actors.metrics.forwarders import ForwarderTotals
from anweddol_actors.metrics.noop import NoMetrics
from anweddol_actors.metrics.phases import CreateClock

__all__ = [
    "CONTAINER_STATES",
    "CREATE_PHASES",
    "OUTCOMES",
    "CreateClock",
    "ForwarderTotals",
    "Metrics",
    "NoMetrics",
    "containers_by_state",
]
