"""What sessions, request flows and the reaper are given: a small context, not the server.

Each field is one thing they need (the journal, the registry, the event dispatch, the
settings, the hypervisor link, the verb table); none of them reaches into the supervisor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anweddol_actors.engine.dispatch import Dispatch
from anweddol_actors.engine.settings import Settings
from anweddol_actors.hypervisor import Hypervisor
from anweddol_actors.journal import Journal

# A verb's routine: ``routine(request) -> dict | None`` (the response in passive mode).
Verb = Callable[["Request"], Any]


class HypervisorLink:
    """The libvirt connection, opened on first use (STAT-only servers never need it)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._hypervisor: Hypervisor | None = None
        self._lock = threading.Lock()
        self._on_open: list[Callable[[Hypervisor], None]] = []

    def get(self) -> Hypervisor:
        with self._lock:
            if self._hypervisor is None:
                hypervisor = Hypervisor(self._settings.libvirt_uri)
                if self._settings.domain_type == "auto":
                    self._settings.domain_type = hypervisor.detect_domain_type()
                self._hypervisor = hypervisor
                for callback in self._on_open:
                    callback(hypervisor)
            return self._hypervisor

    @property
    def opened(self) -> Hypervisor | None:
        """The connection if it is open, without opening it."""
        return self._hypervisor

    def when_open(self, callback: Callable[[Hypervisor], None]) -> None:
        """Call ``callback`` with the connection now if it is open, else once it opens."""
        with self._lock:
            self._on_open.append(callback)
            hypervisor = self._hypervisor
        if hypervisor is not None:
            callback(hypervisor)

    def close(self) -> None:
        with self._lock:
            hypervisor, self._hypervisor = self._hypervisor, None
            self._on_open.clear()
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

    def uptime(self) -> int:
        return 0 if self.started_at is None else int(time.monotonic() - self.started_at)


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
