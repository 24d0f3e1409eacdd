"""What sessions, request flows and the reaper are given: a small context, not the server.

Each field is one thing they need (the journal, the registry, the event dispatch, the
settings, the hypervisor hosts' links, the verb table); none of them reaches into the supervisor.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anweddol_actors.engine.dispatch import Dispatch
from anweddol_actors.engine.hosts import Hosts, HypervisorLink
from anweddol_actors.engine.settings import Settings
from anweddol_actors.journal import Journal
from anweddol_actors.metrics import Metrics, NoMetrics, containers_by_state

log = logging.getLogger(__name__)

# How long a scrape waits for the registry actor's answer.
_READING_TIMEOUT = 2.0

# A verb's routine: ``routine(request) -> dict | None`` (the response in passive mode).
Verb = Callable[["Request"], Any]


@dataclass
class EngineContext:
    settings: Settings
    journal: Journal
    registry: Any  # Registry actor proxy
    dispatch: Dispatch
    # One libvirt link per hypervisor host (engine/hosts.py).
    hosts: Hosts
    owner: str
    private_key: Any = None
    passive: bool = False
    verbs: dict[str, Verb] = field(default_factory=dict)
    started_at: float | None = None
    # Told (never asked) when a live container's actor failed: the reaper tears it down.
    on_entity_failed: Callable[..., None] | None = None
    # Set once the server begins stopping: a CREATE in flight unwinds at its next step.
    stopping: threading.Event = field(default_factory=threading.Event)
    # Set once the start's reconciliation with libvirt ran on every host (at start, or
    # later for a host that did not answer then). Until a host's own ran (``Host.recovered``)
    # no CREATE or DESTROY touches it: a domain made before would be taken for an orphan.
    recovered: threading.Event = field(default_factory=threading.Event)
    # The entity ids the journal held alive when this run started (what recovery reconciles).
    earlier_run: set[str] = field(default_factory=set)
    # The server's metrics (``/metrics``); a context made outside a server counts nothing.
    metrics: Metrics | NoMetrics = field(default_factory=NoMetrics)
    # The warm pool (engine/pool.py ``Pool``) when ``warm_pool_size`` > 0, else None.
    pool: Any = None

    def __post_init__(self) -> None:
        self.use_metrics(self.metrics)

    def use_metrics(self, metrics: Metrics | NoMetrics) -> None:
        """Count with ``metrics`` from now on: it is told of journalled transitions and
        runtime errors, and reads the containers, slots and uptime at each scrape.
        Call it before the server starts (forwarders already made keep the old one)."""
        self.metrics = metrics
        self.journal.on_recorded = metrics.transitions_recorded
        self.dispatch.on_error = metrics.runtime_error
        metrics.watch(
            verbs=self.verbs,
            containers=lambda: containers_by_state(self.journal),
            # Bounded: a scrape must not hang on a busy registry.
            available=functools.partial(self.available_containers, _READING_TIMEOUT),
            uptime=self.uptime_seconds,
        )

    @property
    def hypervisors(self) -> HypervisorLink:
        """The first host's link: "the" hypervisor of the seed façade (``getHypervisor``)."""
        return self.hosts.first.link

    def open_hosts(self) -> list[str]:
        """The hosts a CREATE may go to now, as far as their state goes (capacity aside):
        enabled (not drained, journalled) and answering."""
        return [
            host.name
            for host in self.hosts
            if self.journal.host_enabled(host.name) and host.link.reachable()
        ]

    def available_containers(self, timeout: float | None = None) -> int | None:
        """How many CREATEs would get a container now (STAT's ``available``): the free
        slots of the open hosts (capped by the server-wide limit) plus their warm pools'
        ready containers, which hold slots of their own yet are there for a CREATE; None
        when there is no limit."""
        hosts = self.open_hosts()
        available = self.registry.available(hosts).get(timeout=timeout)
        if available is None or self.pool is None:
            return available
        return available + self.pool.ready_count(hosts)

    def hypervisor_ready(self, host: str | None = None) -> bool:
        """Whether a request may use libvirt now: on ``host``, or (None) on any host —
        reconciled, and its libvirt answers."""
        if host is not None:
            return self.hosts.get(self.hosts.name_in({"host": host})).ready()
        return any(each.ready() for each in self.hosts)

    def uptime(self) -> int:
        """Whole seconds since the start (STAT's ``uptime``)."""
        return int(self.uptime_seconds())

    def uptime_seconds(self) -> float:
        started_at = self.started_at
        return 0.0 if started_at is None else time.monotonic() - started_at


@dataclass
class Request:
    """One request being handled: the client's channel (None when a user runs a verb by
    hand with no client), the session's machine, the extra data a user passed."""

    context: EngineContext
    session: Any  # Lifecycle of the session
    channel: Any = None  # ClientChannel
    passive: bool = False
    parameters: dict | None = None
    extra: dict = field(default_factory=dict)

    @property
    def base_data(self) -> dict:
        return {"client": self.channel, **self.extra}

    @property
    def client_gone(self) -> bool:
        return self.channel is not None and self.channel.closed
