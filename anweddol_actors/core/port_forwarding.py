"""Seed-compatible port forwarding façade (reference/api/port_forwarding.md).

``ForwarderInstance`` is a handle on a forwarder actor. The seed ran one ``socat``
process per forwarder; ours relays in-process, so ``getProcess`` has no process to give.
"""

from __future__ import annotations

import uuid as uuid_module
from typing import Any

from anweddol_actors.engine.entities import start_forwarder_with
from anweddol_actors.journal import Journal

DEFAULT_STORE_FORWARDER = True
DEFAULT_STOP_FORWARD = False
DEFAULT_FORWARDABLE_PORT_RANGE = range(10000, 15000)


class ForwarderInstance:
    def __init__(
        self,
        server_origin_port: int | None,
        container_ip: str,
        container_uuid: str | None,
        container_destination_port: int = 22,
        *,
        journal: Journal | None = None,
        port_range: tuple[int, int] | None = None,
        bind_address: str = "",
        actor: Any = None,
    ) -> None:
        """``actor``: a handle on a forwarder actor the server runs (what handlers get);
        without it, a standalone forwarder with its own in-memory journal."""
        if actor is not None:
            self._container_uuid = actor.id.get().split(".", 1)[0]
            self._actor = actor
            return
        self._container_uuid = container_uuid or str(uuid_module.uuid4())
        if port_range is None:
            if server_origin_port is None:
                raise ValueError("a server origin port or a port range is required")
            port_range = (server_origin_port, server_origin_port)
        self._actor = start_forwarder_with(
            journal if journal is not None else Journal(":memory:"),
            f"{self._container_uuid}.forwarder",
            port_range,
            bind_address,
            (container_ip, container_destination_port),
        )
        self._actor.create().get()

    @classmethod
    def of(cls, actor: Any) -> ForwarderInstance:
        return cls(None, "", None, actor=actor)

    @property
    def actor(self) -> Any:
        return self._actor

    def _describe(self) -> dict:
        return self._actor.describe().get()

    def isForwarding(self) -> bool:
        return bool(self._describe()["forwarding"])

    def getServerOriginPort(self) -> int | None:
        return self._describe()["port"]

    def getContainerIP(self) -> str:
        return self._describe()["target"][0]

    def getContainerUUID(self) -> str:
        return self._container_uuid

    def getContainerDestinationPort(self) -> int:
        return self._describe()["target"][1]

    def getProcess(self) -> None:
        return None

    def setServerOriginPort(self, server_origin_port: int) -> None:
        raise RuntimeError("the origin port is reserved by binding it; it cannot be changed")

    def setContainerIP(self, container_ip: str) -> None:
        self._actor.set_target(host=container_ip).get()

    def setContainerDestinationPort(self, container_destination_port: int) -> None:
        self._actor.set_target(port=container_destination_port).get()

    def setProcess(self, process: Any) -> None:
        raise RuntimeError("forwarders relay in-process; there is no process to set")

    def startForward(self) -> None:
        self._actor.start_forwarding().get()

    def stopForward(self) -> None:
        self._actor.stop_forwarding().get()

    def stop_actor(self) -> None:
        self._actor.actor_ref.stop()
