"""Container actors: one per VM, owning its libvirt domain from creation to destruction.

The actor does the hypervisor's quick work (define-and-start, destroy, queries) and keeps
the container's machine; it never waits for the guest. Waiting for SSH and talking to the
guest happen on the session that asked for the container (:func:`wait_ready`), so a slow
boot stalls only the client that asked for it, and a stop request is never queued behind
a long wait.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from anweddol_actors.actors.base import EntityActor, FailureListener, Refused, governed
from anweddol_actors.errors import AnweddolError
from anweddol_actors.hypervisor import (
    DomainSpec,
    ForwardPortInUse,
    Hypervisor,
    HypervisorUnavailable,
    wait_for_ssh_banner,
)
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle, Transition

# How many host ports a user-mode domain may try before giving up: QEMU reports a taken
# port only when the domain starts (IMAGE-NOTES.md), so "try, and pick another" it is.
_FORWARD_PORT_TRIES = 16
# How often a boot wait checks that the domain is still alive.
_READY_SLICE = 2.0


class ContainerError(AnweddolError, RuntimeError):
    """A container could not do what was asked (no free port, a domain that died)."""


class ContainerRefused(Refused, RuntimeError):
    """A container was asked something its state does not allow (nothing was done)."""


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
    # Where the guest's forwarded SSH port listens on its host (``DomainSpec``).
    forward_address: str = "127.0.0.1"
    # The name of the hypervisor host the container runs on (``Settings.hosts``).
    host: str = "local"


class ContainerActor(EntityActor):
    def __init__(
        self,
        container_uuid: str,
        journal: Journal,
        hypervisor: Hypervisor,
        settings: ContainerSettings,
        lifecycle: Lifecycle | None = None,
        on_failed: FailureListener | None = None,
    ) -> None:
        """``lifecycle``: a resumed one, to adopt a container a previous run left serving."""
        super().__init__(on_failed)
        self.uuid = container_uuid
        self.hypervisor = hypervisor
        self.settings = settings
        self.lifecycle = lifecycle or Lifecycle("container", container_uuid, journal)
        self.guest_address: tuple[str, int] | None = None
        self.forward_port: int | None = None
        self.spec: DomainSpec | None = None
        # Whether a domain may exist: set before libvirt is asked to create one, so that a
        # create that half-happened is destroyed too; an adopted container has one.
        self.may_have_domain = lifecycle is not None
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
            "guest_address": self.guest_address,
            **asdict(self.settings),
        }

    def configure(self, **changes: Any) -> None:
        if self.lifecycle.state != "created":
            raise ContainerRefused(
                f"Container {self.uuid} is {self.lifecycle.state}: its domain settings are fixed"
            )
        for key, value in changes.items():
            if not hasattr(self.settings, key):
                raise AttributeError(key)
            setattr(self.settings, key, value)

    def is_domain_running(self) -> bool:
        return self.lifecycle.is_in("started") and self.hypervisor.is_active(self.uuid)

    def domain(self) -> Any:
        """The libvirt domain object (seed ``getDomainDescriptor``), or None."""
        try:
            return self.hypervisor.lookup(self.uuid)
        except Exception:
            return None

    # -- lifecycle ---------------------------------------------------------------------

    def create(self, context: int | None = None) -> Transition:
        """Journal the container's creation (its settings as they are now)."""
        return self.lifecycle.create(
            context=context,
            data={"domain_uuid": self.uuid, **self._recovery_data()},
        )

    def _recovery_data(self) -> dict[str, Any]:
        """What a later run needs to adopt or clean up the domain (DESIGN.md, Journal);
        journalled at ``create`` and again at ``start``, since handlers may change it
        between the two."""
        settings = self.settings
        return {
            "iso_path": str(settings.iso_path),
            "memory_mib": settings.memory_mib,
            "vcpus": settings.vcpus,
            "network": settings.network_mode,
            # Which host's libvirt holds the domain: what recovery reconciles it against.
            "host": settings.host,
        }

    @governed
    def start_domain(self, context: int | None = None) -> Transition:
        """Journal ``start``, then create and start the transient domain.

        The transition comes first, so that a crash between the two leaves a journalled
        container whose domain the next start destroys, never a domain nobody knows about.
        """
        settings = self.settings
        if settings.memory_mib < 1 or settings.vcpus < 1:
            raise Refused("container memory and vcpus must be positive")
        transition = self.lifecycle.fire("start", context=context, data=self._recovery_data())
        # Known unreachable: no domain can have been made, so the failure releases nothing
        # (and leaves nothing for the reaper to retry).
        self.hypervisor.check()
        self.may_have_domain = True
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
                forward_address=settings.forward_address,
            )
            try:
                self.hypervisor.create_domain(spec)
            except ForwardPortInUse as exc:
                last_error = exc
                continue
            self.forward_port = port
            self.spec = spec
            if port is not None:
                self.guest_address = (settings.forward_address, port)
            return transition
        raise ContainerError(f"no free loopback port for the guest's SSH: {last_error}")

    @governed
    def resolve_guest_address(self, timeout: float) -> tuple[str, int]:
        if self.guest_address is None:
            if self.spec is None:
                raise ContainerError(f"container {self.uuid} has no domain")
            self.guest_address = self.hypervisor.guest_address(
                self.spec, deadline=time.monotonic() + timeout
            )
        return self.guest_address

    def mark_administered(self, username: str, context: int | None = None) -> Transition:
        return self.lifecycle.fire(
            "administer",
            context=context,
            details={"username": username},
            data={"forward_port": self.forward_port},
        )

    def mark_pooled(self, listen_port: int, context: int | None = None) -> Transition:
        """Journal that the container waits in the warm pool, its forwarder's port
        reserved (``listen_port``) but not relaying yet."""
        return self.lifecycle.fire(
            "pool",
            context=context,
            data={"pool_listen_port": listen_port, "guest_address": list(self.guest_address or ())},
        )

    def mark_serving(self, forwarder_port: int, context: int | None = None) -> Transition:
        return self.lifecycle.fire(
            "serve",
            context=context,
            data={"listen_port": forwarder_port, "guest_address": list(self.guest_address or ())},
        )

    def mark_lost(
        self, host: str, unreachable_for: float, context: int | None = None
    ) -> Transition:
        """Journal ``lose``: the container's host was unreachable for ``unreachable_for``
        seconds, past the grace. Nothing is asked of libvirt (it does not answer): the
        domain, if it still runs there, is the host watcher's to destroy once the host is
        back (engine/hostloss.py), so this actor ends without releasing it."""
        return self.lifecycle.fire(
            "lose",
            context=context,
            details={"host": host, "unreachable_for": round(unreachable_for, 1)},
            data={"host": host},
        )

    def _end_quietly(self) -> None:
        # A lost container's domain is on a host that does not answer: destroying it here
        # would only fail and journal a ``fail``; the host watcher destroys it (journalled
        # ``lost → destroyed``) when the host is back, or the next start reconciles it.
        if self.lifecycle.state == "lost":
            return
        super()._end_quietly()

    def stop_domain(
        self, context: int | None = None, reason: str | None = None, details: dict | None = None
    ) -> Transition | None:
        """Journal ``stop`` (``fail`` with a reason), destroy the domain, journal ``destroy``.

        Returns the stop/fail transition when a running domain was ended (the caller fires
        ``on_container_domain_stopped``), else None. When libvirt cannot destroy the domain
        the container stays ``failed`` and the error propagates: its slot is not free.
        """
        return self.end("stop", context, reason, details)

    def release(self) -> None:
        if self.may_have_domain:
            self.hypervisor.destroy_domain(self.uuid)


def wait_ready(container: Any, container_uuid: str, timeout: float | None) -> tuple[str, int]:
    """Block the caller until the guest's SSH server sends its banner; the guest's address.

    ``container`` is the container actor's proxy. Readiness is the banner, not a TCP
    connect: QEMU accepts on the forwarded port long before the guest listens
    (IMAGE-NOTES.md). The wait is cut in slices so that a domain that dies while booting
    fails the wait at once instead of at the deadline.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    host, port = container.resolve_guest_address(timeout or 3600).get()
    while True:
        step_end = time.monotonic() + _READY_SLICE
        if deadline is not None:
            step_end = min(step_end, deadline)
        try:
            wait_for_ssh_banner(host, port, step_end)
            return host, port
        except TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"container {container_uuid}: no SSH banner from {host}:{port} "
                    f"within {timeout:.0f} s"
                ) from None
            try:
                running = container.is_domain_running().get()
            except HypervisorUnavailable:
                # libvirtd restarting: the guest runs on without it; its banner decides.
                running = True
            if not running:
                raise ContainerError(
                    f"container {container_uuid}: the domain stopped while booting"
                ) from None
