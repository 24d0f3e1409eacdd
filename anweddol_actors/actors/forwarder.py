"""Forwarder actors: one per container, relaying a server port to the guest's SSH.

The port is reserved by binding it (never "check, then bind": PROTOCOL.md §4) when the
forwarder is created, so a full range fails the CREATE before anything is promised to
the client; the relay itself runs on its own event-loop thread.

Its connection limits, and the owner (the address that made the CREATE) they protect, are
the relay's (forwarding/relay.py says the rule). The owner is journalled with ``start``, so
a forwarder adopted after a restart protects the same address.
"""

from __future__ import annotations

import time
from typing import Any

from anweddol_actors.actors.base import EntityActor, FailureListener, Refused, governed
from anweddol_actors.forwarding.ports import reserve_port
from anweddol_actors.forwarding.relay import Relay
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle, Transition


class ForwarderError(Refused, RuntimeError):
    """A forwarder was asked something its state does not allow."""


class ForwarderActor(EntityActor):
    def __init__(
        self,
        forwarder_id: str,
        journal: Journal,
        port_range: tuple[int, int],
        bind_address: str,
        target: tuple[str, int],
        lifecycle: Lifecycle | None = None,
        on_failed: FailureListener | None = None,
        *,
        max_connections: int | None = None,
        max_connections_per_address: int | None = None,
        owner: str | None = None,
        relays: Any = None,
    ) -> None:
        """``lifecycle``: a resumed one (state ``started``), to adopt a previous run's;
        its journalled owner is used when ``owner`` is not given. ``relays``: told when
        the relay starts and once it has ended (``metrics.ForwarderTotals``: the server's
        byte and connection totals read each running relay and fold each ended one)."""
        super().__init__(on_failed)
        self.id = forwarder_id
        self.target = target
        self.max_connections = max_connections
        self.max_connections_per_address = max_connections_per_address
        self.bind_address = bind_address
        self.port_range = port_range
        self.lifecycle = lifecycle or Lifecycle("forwarder", forwarder_id, journal)
        self.owner = owner or self.lifecycle.data.get("owner") or None
        self._socket = None
        self._relay: Relay | None = None
        self._relays = relays
        self._started_at = time.monotonic()

    def describe(self) -> dict:
        return {
            "id": self.id,
            "state": self.lifecycle.state,
            "port": self.port,
            "target": self.target,
            "forwarding": self._relay is not None and self._relay.is_running,
            "owner": self.owner,
            "refused": 0 if self._relay is None else self._relay.stats.refused,
        }

    @property
    def port(self) -> int | None:
        return self._socket.getsockname()[1] if self._socket is not None else None

    @governed
    def create(self, context: int | None = None) -> Transition:
        """Journal the forwarder's creation, then bind a port of the range.

        Raises PortRangeExhausted (the forwarder then ends ``failed``) when none is free.
        """
        transition = self.lifecycle.create(context=context, data={"target": list(self.target)})
        low, high = self.port_range
        self._socket = reserve_port(range(low, high + 1), self.bind_address)
        return transition

    def set_target(self, host: str | None = None, port: int | None = None) -> None:
        if self.lifecycle.state != "created":
            raise ForwarderError("the forwarder is already started")
        self.target = (host or self.target[0], port or self.target[1])

    def set_owner(self, owner: str | None) -> None:
        """The address the forwarder protects, set before it relays (a warm pool's
        forwarder learns its client at the CREATE that takes it)."""
        if self.lifecycle.state != "created":
            raise ForwarderError("the forwarder is already started")
        self.owner = owner or None

    @governed
    def start_forwarding(self, context: int | None = None) -> Transition:
        """Journal ``start``, then relay. Starting twice is refused before a second relay."""
        if self._socket is None:
            raise ForwarderError("the forwarder has no port: create it first")
        transition = self.lifecycle.fire(
            "start",
            context=context,
            data={"port": self.port, "target": list(self.target), "owner": self.owner},
        )
        self._relay = self._new_relay()
        self._relay.start()
        self._relay_started(self._relay)
        return transition

    def _new_relay(self) -> Relay:
        return Relay(
            self._socket,
            self.target,
            name=f"forwarder-{self.id[:8]}",
            max_connections=self.max_connections,
            max_connections_per_address=self.max_connections_per_address,
            owner=self.owner,
        )

    @governed
    def resume_forwarding(self) -> int:
        """Relay again on the journalled port after a restart; no transition (still started)."""
        if self.lifecycle.state != "started" or self._relay is not None:
            raise ForwarderError(f"forwarder {self.id} is {self.lifecycle.state}, not resumable")
        low, high = self.port_range
        self._socket = reserve_port(range(low, high + 1), self.bind_address)
        self._relay = self._new_relay()
        self._relay.start()
        self._relay_started(self._relay)
        return self.port

    def _relay_started(self, relay: Relay) -> None:
        if self._relays is not None:
            self._relays.started(relay)

    def idle_seconds(self) -> float:
        """Seconds since the last connection through the forwarder closed (0 while one is
        open); counted from the relay's start when none ever opened."""
        relay = self._relay
        if relay is None:
            return time.monotonic() - self._started_at
        since = relay.idle_since
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    def stop_forwarding(
        self, context: int | None = None, reason: str | None = None, details: dict | None = None
    ) -> Transition | None:
        """Journal ``stop`` (``fail`` with a reason), stop relaying, free the port,
        ``destroy``. Returns the transition when it was relaying (the caller fires the event)."""
        return self.end("stop", context, reason, details)

    def release(self) -> None:
        relay, self._relay = self._relay, None
        sock, self._socket = self._socket, None
        try:
            if relay is not None:
                relay.stop()
                if self._relays is not None:
                    # Stopped and joined: its counts are final, folded into the totals.
                    self._relays.ended(relay)
        finally:
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
