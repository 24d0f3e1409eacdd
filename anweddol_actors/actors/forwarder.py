"""Forwarder actors: one per container, relaying a server port to the guest's SSH.

The port is reserved by binding it (never "check, then bind": PROTOCOL.md §4) when the
forwarder is created, so a full range fails the CREATE before anything is promised to
the client; the relay itself runs on its own event-loop thread.
"""

from __future__ import annotations

from anweddol_actors.actors.base import OwningActor, finish
from anweddol_actors.forwarding.ports import reserve_port
from anweddol_actors.forwarding.relay import Relay
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle


class ForwarderActor(OwningActor):
    def __init__(
        self,
        forwarder_id: str,
        journal: Journal,
        port_range: tuple[int, int],
        bind_address: str,
        target: tuple[str, int],
        lifecycle: Lifecycle | None = None,
    ) -> None:
        """``lifecycle``: a resumed one (state ``started``), to adopt a previous run's."""
        super().__init__()
        self.id = forwarder_id
        self.target = target
        self.bind_address = bind_address
        self.port_range = port_range
        self.lifecycle = lifecycle or Lifecycle("forwarder", forwarder_id, journal)
        self._socket = None
        self._relay: Relay | None = None

    def describe(self) -> dict:
        return {
            "id": self.id,
            "state": self.lifecycle.state,
            "port": self.port,
            "target": self.target,
            "forwarding": self._relay is not None and self._relay.is_running,
        }

    @property
    def port(self) -> int | None:
        return self._socket.getsockname()[1] if self._socket is not None else None

    def reserve(self) -> int:
        """Bind a port of the range now; raises PortRangeExhausted when none is free."""
        if self._socket is None:
            low, high = self.port_range
            self._socket = reserve_port(range(low, high + 1), self.bind_address)
        return self.port

    def set_target(self, host: str | None = None, port: int | None = None) -> None:
        if self.lifecycle.state != "created":
            raise RuntimeError("the forwarder is already started")
        self.target = (host or self.target[0], port or self.target[1])

    def start_forwarding(self, context: int | None = None) -> int:
        port = self.reserve()
        relay = Relay(self._socket, self.target, name=f"forwarder-{self.id[:8]}")
        relay.start()
        self._relay = relay
        try:
            self.lifecycle.fire(
                "start", context=context, data={"port": port, "target": list(self.target)}
            )
        except Exception:
            self._close()
            raise
        return port

    def resume_forwarding(self) -> int:
        """Relay again on the journalled port after a restart; no transition (still started)."""
        if self.lifecycle.state != "started":
            raise RuntimeError(f"forwarder {self.id} is {self.lifecycle.state}, not started")
        port = self.reserve()
        self._relay = Relay(self._socket, self.target, name=f"forwarder-{self.id[:8]}")
        self._relay.start()
        return port

    def stop_forwarding(self, context: int | None = None, reason: str | None = None) -> bool:
        """Stop relaying and free the port; True when it was relaying. Ends ``destroyed``."""
        was_running = self._relay is not None
        self._close()
        finish(self.lifecycle, "stop", context, reason)
        return was_running

    def _close(self) -> None:
        if self._relay is not None:
            self._relay.stop()
            self._relay = None
        if self._socket is not None:
            try:
                self._socket.close()
            except OSError:
                pass
            self._socket = None

    def release(self) -> None:
        self.stop_forwarding(reason="actor stopped" if self._relay is not None else None)
