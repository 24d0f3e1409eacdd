"""Container actors: one per VM, owning its libvirt domain from creation to destruction.

The actor does the hypervisor's quick work (define-and-start, destroy, queries) and keeps
the container's machine; it never waits for the guest. Waiting for SSH and talking to the
guest happen on the session that asked for the container, so a slow boot stalls only the
client that asked for it, and a stop request is never queued behind a long wait.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from anweddol_actors.actors.base import OwningActor, finish
from anweddol_actors.hypervisor import DomainSpec, ForwardPortInUse, Hypervisor
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle

# How many host ports a user-mode domain may try before giving up: QEMU reports a taken
# port only when the domain starts (IMAGE-NOTES.md), so "try, and pick another" it is.
_FORWARD_PORT_TRIES = 16


@dataclass
class ContainerSettings:
    iso_path: str
    memory_mib: int
    vcpus: int
    domain_type: str
    network_mode: str = "user"
    nat_interface_name: str = "virbr0"
    guest_port_range: tuple[int, int] = (30000, 39999)
    owner: str | None = None


class ContainerActor(OwningActor):
    def __init__(
        self,
        container_uuid: str,
        journal: Journal,
        hypervisor: Hypervisor,
        settings: ContainerSettings,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        """``lifecycle``: a resumed one, to adopt a container a previous run left serving."""
        super().__init__()
        self.uuid = container_uuid
        self.hypervisor = hypervisor
        self.settings = settings
        self.lifecycle = lifecycle or Lifecycle("container", container_uuid, journal)
        self.guest_address: tuple[str, int] | None = None
        self.forward_port: int | None = None
        self.spec: DomainSpec | None = None
        if lifecycle is not None:
            data = lifecycle.data
            self.forward_port = data.get("forward_port")
            if data.get("guest_address"):
                self.guest_address = tuple(data["guest_address"])

    # -- settings that handlers may change before the domain starts --------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "state": self.lifecycle.state,
            "iso_path": self.settings.iso_path,
            "memory_mib": self.settings.memory_mib,
            "vcpus": self.settings.vcpus,
            "nat_interface_name": self.settings.nat_interface_name,
            "guest_address": self.guest_address,
            "network_mode": self.settings.network_mode,
        }

    def configure(self, **changes: Any) -> None:
        if self.lifecycle.state != "created":
            raise RuntimeError(
                f"Container {self.uuid} is {self.lifecycle.state}: its domain settings are fixed"
            )
        for key, value in changes.items():
            if not hasattr(self.settings, key):
                raise AttributeError(key)
            setattr(self.settings, key, value)

    def is_domain_running(self) -> bool:
        return self.lifecycle.state.startswith("started") and self.hypervisor.is_active(self.uuid)

    def domain(self) -> Any:
        """The libvirt domain object (seed ``getDomainDescriptor``), or None."""
        try:
            return self.hypervisor.lookup(self.uuid)
        except Exception:
            return None

    # -- lifecycle ---------------------------------------------------------------------

    def start_domain(self, context: int | None = None) -> tuple[str, int] | None:
        """Create and start the transient domain; journal ``start``.

        Returns the guest's SSH address when it is known at once (``user`` mode: the
        loopback forward port), else None (``nat``: ask :meth:`resolve_guest_address`).
        """
        settings = self.settings
        if settings.memory_mib < 1 or settings.vcpus < 1:
            raise ValueError("container memory and vcpus must be positive")
        tries = _FORWARD_PORT_TRIES if settings.network_mode == "user" else 1
        low, high = settings.guest_port_range
        last_error: Exception | None = None
        for _ in range(tries):
            port = random.randint(low, high) if settings.network_mode == "user" else None
            spec = DomainSpec(
                uuid=self.uuid,
                memory_mib=settings.memory_mib,
                vcpus=settings.vcpus,
                iso_path=settings.iso_path,
                domain_type=settings.domain_type,
                network=settings.network_mode,
                forward_port=port,
                nat_interface_name=settings.nat_interface_name,
                owner=settings.owner,
            )
            try:
                self.hypervisor.create_domain(spec)
            except ForwardPortInUse as exc:
                last_error = exc
                continue
            self.forward_port = port
            self.spec = spec
            break
        else:
            raise RuntimeError(f"no free loopback port for the guest's SSH: {last_error}")
        if port is not None:
            self.guest_address = ("127.0.0.1", port)
        try:
            # What a later run needs to adopt or clean up this container (DESIGN.md, Journal).
            self.lifecycle.fire(
                "start",
                context=context,
                data={
                    "domain_uuid": self.uuid,
                    "forward_port": port,
                    "network": spec.network,
                    "iso_path": str(settings.iso_path),
                    "memory_mib": settings.memory_mib,
                    "vcpus": settings.vcpus,
                },
            )
        except Exception:
            self.hypervisor.destroy_domain(self.uuid)
            raise
        return self.guest_address

    def resolve_guest_address(self, timeout: float) -> tuple[str, int]:
        if self.guest_address is None:
            if self.spec is None:
                raise RuntimeError(f"container {self.uuid} has no domain")
            self.guest_address = self.hypervisor.guest_address(
                self.spec, deadline=time.monotonic() + timeout
            )
        return self.guest_address

    def mark_administered(self, username: str, context: int | None = None) -> None:
        self.lifecycle.fire("administer", context=context, details={"username": username})

    def mark_serving(self, forwarder_port: int, context: int | None = None) -> None:
        self.lifecycle.fire(
            "serve",
            context=context,
            data={"listen_port": forwarder_port, "guest_address": list(self.guest_address or ())},
        )

    def stop_domain(self, context: int | None = None, reason: str | None = None) -> bool:
        """Destroy the domain (if any) and move to ``stopped``/``failed``, then ``destroyed``.

        Returns True when this call ended a domain that was running (the caller fires
        ``on_container_domain_stopped``); idempotent.
        """
        if self.lifecycle.state == "destroyed":
            return False
        was_started = self.lifecycle.is_in("started")
        self.hypervisor.destroy_domain(self.uuid)
        finish(self.lifecycle, "stop", context, reason)
        return was_started

    def release(self) -> None:
        if self.lifecycle.state != "destroyed":
            self.stop_domain(reason="actor stopped")
