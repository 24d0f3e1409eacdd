"""The metric families of one server, in a registry of its own.

Hot-path calls (:meth:`Metrics.request`, :meth:`Metrics.transitions_recorded`, a
CREATE's clock) find their label child in a dict bound in advance (or bound once, at the
first use of a label set), so a request costs a dict lookup, an increment and an
observation: no label parsing, no allocation of label tuples per call beyond the key.
Client-chosen strings never become label values: a verb the server does not handle is
``other``, an outcome outside the known ones too, so the number of series is bounded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Container, Iterable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from anweddol_actors.lifecycle.definitions import SPECS
from anweddol_actors.metrics.forwarders import ForwarderTotals
from anweddol_actors.metrics.phases import CreateClock
from anweddol_actors.metrics.scrape import EngineReadings
from anweddol_actors.protocol.messages import RESPONSE_MESSAGES

__all__ = ["CREATE_PHASES", "OUTCOMES", "Metrics", "TRANSPORTS"]

log = logging.getLogger(__name__)

# A CREATE's phases, in order (engine/create.py laps them):
# admission       the checks and the capacity slot;
# define          the container entity, then its libvirt domain defined and started;
# boot            the guest boots, until its SSH server answers;
# administration  the endpoint shell: SSH login, the client's user created, logout;
# forwarder       a port bound and relaying to the guest;
# credentials     the client token stored (hashed), the container registered;
# response        the response delivered (acknowledged) and ``serve`` journalled.
# The seed event handlers of each step run inside its phase.
CREATE_PHASES = (
    "admission",
    "define",
    "boot",
    "administration",
    "forwarder",
    "credentials",
    "response",
)

# Outcomes as in the request log line: the response's message, else how the session ended.
OUTCOMES = (*RESPONSE_MESSAGES, "refused", "failed", "closed")
TRANSPORTS = ("tcp", "http")
OTHER = "other"
NO_VERB = "-"  # the session ended before a valid request (as in the request line)
NO_KIND = "server"  # a runtime error with no entity's ``fail`` behind it
_REQUEST = ("session", "request")

# Seconds. A STAT over TCP is an RSA key exchange (milliseconds); a CREATE boots a VM.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
CREATE_BUCKETS = (1, 2.5, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600)
PHASE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)


class Metrics:
    """Every metric of one engine server; :meth:`render` is the ``/metrics`` text."""

    enabled = True
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        # Never the library's global REGISTRY: each server counts for itself.
        self.registry = CollectorRegistry(auto_describe=False)
        registry = self.registry
        self._requests = Counter(
            "anweddol_requests",
            "Client sessions ended, by transport, verb and outcome (as in the request line)",
            ("transport", "verb", "outcome"),
            registry=registry,
        )
        self._request_seconds = Histogram(
            "anweddol_request_duration_seconds",
            "Seconds from a connection's accept to its end (key exchange, request, response)",
            ("transport", "verb"),
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        transitions = Counter(
            "anweddol_transitions",
            "Journalled transitions, by entity kind and trigger",
            ("kind", "trigger"),
            registry=registry,
        )
        self._transitions = {
            (kind, trigger): transitions.labels(kind, trigger)
            for kind, spec in SPECS.items()
            for trigger in spec.triggers
        }
        self._transitions_family = transitions
        self._create_seconds = Histogram(
            "anweddol_create_duration_seconds",
            "Seconds a delivered CREATE took, from its request to its acknowledged response",
            buckets=CREATE_BUCKETS,
            registry=registry,
        )
        phases = Histogram(
            "anweddol_create_phase_duration_seconds",
            "Seconds each phase of a delivered CREATE took",
            ("phase",),
            buckets=PHASE_BUCKETS,
            registry=registry,
        )
        self._phases = {phase: phases.labels(phase) for phase in CREATE_PHASES}
        self._phases_family = phases
        errors = Counter(
            "anweddol_runtime_errors",
            "Runtime errors reported (on_runtime_error), by the kind of entity that failed",
            ("kind",),
            registry=registry,
        )
        self._errors = {kind: errors.labels(kind) for kind in (*SPECS, NO_KIND)}
        self._errors_family = errors
        self.forwarders = ForwarderTotals()
        self._readings = EngineReadings(self.forwarders)
        registry.register(self._readings)
        # Valid requests received (journalled session.request steps): the page's counter.
        self._received = 0
        self._received_lock = threading.Lock()
        self._verbs: Container[str] = ()
        self._bound: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._outcomes = frozenset(OUTCOMES)
        self._transports = frozenset(TRANSPORTS)

    # -- what the engine tells -----------------------------------------------------------

    def watch(
        self,
        *,
        verbs: Container[str],
        containers: Callable[[], Mapping[str, int]] | None = None,
        available: Callable[[], int | None] | None = None,
        uptime: Callable[[], float] | None = None,
    ) -> None:
        """What the engine knows, read at each scrape: ``containers`` ({state: count}),
        ``available`` (free slots, None without a limit), ``uptime`` (seconds); ``verbs``,
        the verb table (a live mapping: verbs registered later count too)."""
        self._verbs = verbs
        self._readings.watch(containers, available, uptime)

    def request(self, verb: str | None, outcome: str, seconds: float, transport: str) -> None:
        """One session ended (the request line's fields). Labels are bounded here."""
        if verb is None:
            verb = NO_VERB
        elif verb not in self._verbs:
            verb = OTHER
        if outcome not in self._outcomes:
            outcome = OTHER
        if transport not in self._transports:
            transport = OTHER
        key = (transport, verb, outcome)
        children = self._bound.get(key)
        if children is None:
            children = self._bound[key] = (
                self._requests.labels(transport, verb, outcome),
                self._request_seconds.labels(transport, verb),
            )
        children[0].inc()
        children[1].observe(seconds)

    def transitions_recorded(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Rows the journal committed (its ``on_recorded`` hook)."""
        children = self._transitions
        for row in rows:
            key = (row["kind"], row["trigger"])
            if key == _REQUEST:
                with self._received_lock:  # sessions journal from their own threads
                    self._received += 1
            child = children.get(key)
            if child is None:
                child = children[key] = self._transitions_family.labels(*key)
            child.inc()

    @property
    def requests_received(self) -> int:
        """Valid requests this server received, TCP and HTTP (committed ``request`` steps
        of client sessions)."""
        return self._received

    def runtime_error(self, kind: str | None) -> None:
        """One runtime error counted by the dispatch; ``kind``: the failed entity's."""
        child = self._errors.get(kind or NO_KIND)
        if child is None:
            child = self._errors_family.labels(kind)
        child.inc()

    def create_clock(self) -> CreateClock:
        """A clock for one CREATE, started now."""
        return CreateClock(self)

    def create_observed(self, total: float, laps: Iterable[tuple[str, float]]) -> None:
        self._create_seconds.observe(total)
        phases = self._phases
        for phase, seconds in laps:
            child = phases.get(phase)
            if child is None:
                child = phases[phase] = self._phases_family.labels(phase)
            child.observe(seconds)

    # -- exposition ----------------------------------------------------------------------

    def render(self) -> bytes:
        """The Prometheus text format of every family (``content_type``)."""
        return generate_latest(self.registry)
