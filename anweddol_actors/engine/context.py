"""What sessions, request flows and the reaper are given: a small context, not the server.

Each field is one thing they need (the journal, the registry, the event dispatch, the
settings, the hypervisor link, the verb table); none of them reaches into the supervisor.
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
from anweddol_actors.engine.settings import Settings
from anweddol_actors.hypervisor import Hypervisor, HypervisorError
from anweddol_actors.journal import Journal
from anweddol_actors.metrics import Metrics, NoMetrics, containers_by_state

log = logging.getLogger(__name__)

# How long a scrape waits for the registry actor's answer.
_READING_TIMEOUT = 2.0

# A verb's routine: ``routine(request) -> dict | None`` (the response in passive mode).
Verb = Callable[["Request"], Any]


class HypervisorLink:
    """The server's libvirt connection, made on first use and kept for the server's life.

    It outlives libvirtd restarts (``Hypervisor`` reconnects by itself): callers ask
    :meth:`reachable` before starting what needs libvirt, and hear of every
    (re)connection through :meth:`when_connected`. A libvirt that does not answer when the
    link is made does not fail it: the connection is retried in the background.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._hypervisor: Hypervisor | None = None
        self._lock = threading.Lock()
        self._on_connect: list[Callable[[], None]] = []

    def get(self) -> Hypervisor:
        """The connection (perhaps still reconnecting: its calls then raise
        HypervisorUnavailable)."""
        with self._lock:
            if self._hypervisor is not None:
                return self._hypervisor
            hypervisor = Hypervisor(self._settings.libvirt_uri, wait_for_connection=True)
            self._hypervisor = hypervisor
        # Outside the lock: when connected already, _connected runs here and takes it.
        hypervisor.on_connect(self._connected)
        return hypervisor

    def _connected(self) -> None:
        """At every (re)connection: learn the domain type once, then tell the listeners."""
        hypervisor = self._hypervisor
        if hypervisor is None:
            return
        if self._settings.domain_type == "auto":
            try:
                self._settings.domain_type = hypervisor.detect_domain_type()
            except HypervisorError as exc:
                log.warning("domain type not detected yet: %s", exc)
        with self._lock:
            callbacks = list(self._on_connect)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("hypervisor (re)connection listener failed")

    def reachable(self) -> bool:
        """Whether libvirt answers now (its connection is open and alive, as far as known)."""
        return self.get().connected

    @property
    def opened(self) -> Hypervisor | None:
        """The connection if it was made, without making it."""
        return self._hypervisor

    def when_connected(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` now if connected, and after every later (re)connection (on
        the reconnecting thread: keep it short, tell an actor). At least once per
        connection: a callback added while the link is being made may hear it twice."""
        with self._lock:
            self._on_connect.append(callback)
            hypervisor = self._hypervisor
        if hypervisor is not None and hypervisor.connected:
            callback()

    def close(self) -> None:
        with self._lock:
            hypervisor, self._hypervisor = self._hypervisor, None
            self._on_connect.clear()
        if hypervisor is not None:
            hypervisor.close()


@dataclass
class EngineContext:
    settings: Settings
    journal: Journal
    registry: Any  # Registry actor proxy
    dispatch: Dispatch
    hypervisors: HypervisorLink
    owner: str
    private_key: Any = None
    passive: bool = False
    verbs: dict[str, Verb] = field(default_factory=dict)
    started_at: float | None = None
    # Told (never asked) when a live container's actor failed: the reaper tears it down.
    on_entity_failed: Callable[..., None] | None = None
    # Set once the server begins stopping: a CREATE in flight unwinds at its next step.
    stopping: threading.Event = field(default_factory=threading.Event)
    # Set once the start's reconciliation with libvirt ran (at start, or later when
    # libvirt did not answer then). Until then no CREATE or DESTROY touches libvirt: a
    # domain made before it would be taken for an orphan.
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

    def available_containers(self, timeout: float | None = None) -> int | None:
        """How many CREATEs would get a container now (STAT's ``available``): the free
        slots plus the warm pool's ready containers, which hold slots of their own yet are
        there for a CREATE; None when there is no limit."""
        available = self.registry.available().get(timeout=timeout)
        if available is None or self.pool is None:
            return available
        return available + self.pool.ready_count()

    def hypervisor_ready(self) -> bool:
        """Whether a request may use libvirt now: recovered, and libvirt answers."""
        return self.recovered.is_set() and self.hypervisors.reachable()

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
