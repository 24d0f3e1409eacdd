"""``Hypervisor``: one libvirt connection, the only code that talks to libvirt.

Domains are transient (``createXML``): destroying one leaves nothing defined. Every domain
we start carries our marker (name prefix + a ``<metadata>`` element in our namespace) so a
restarted server can find its own. Methods are thread-safe (libvirt connections are, and
libvirt-python releases the GIL during calls); no libvirt object leaves this module.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlparse

import libvirt

from anweddol_actors.hypervisor import events
from anweddol_actors.hypervisor.domain_xml import (
    DOMAIN_NAME_PREFIX,
    LOOPBACK,
    MARKER_NAMESPACE,
    MARKER_PREFIX,
    DomainSpec,
    marker_owner,
    marker_uuid,
    render_domain_xml,
)
from anweddol_actors.hypervisor.errors import (
    DomainCreateError,
    DomainNotFound,
    ForwardPortInUse,
    GuestTimeout,
    HypervisorError,
    HypervisorUnavailable,
)
from anweddol_actors.hypervisor.kvm import local_kvm_usable

log = logging.getLogger(__name__)

DEFAULT_URI = "qemu:///system"
GUEST_SSH_PORT = 22

_PORT_IN_USE = re.compile(r"Could not set up host forwarding rule", re.IGNORECASE)
_ISO_UNREADABLE = re.compile(
    r"Cannot access storage file|No such file or directory|Permission denied|"
    r"Could not open '|cannot open file",
    re.IGNORECASE,
)

_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


@dataclass(frozen=True)
class DomainHandle:
    """What ``create_domain`` returns: plain data, safe to pass between actors."""

    uuid: str
    name: str
    spec: DomainSpec
    created_at: float  # time.monotonic() when createXML returned


@dataclass(frozen=True)
class DomainInfo:
    uuid: str
    name: str
    state: str
    memory_mib: int
    max_memory_mib: int
    vcpus: int


def _is_no_domain(exc: libvirt.libvirtError) -> bool:
    return exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN


def _is_local_uri(uri: str) -> bool:
    # "qemu:///system" has no host; "qemu+ssh://host/system" does.
    return not urlparse(uri).netloc


class Hypervisor:
    """A libvirt connection and the container-domain operations on it.

    ``close()`` when done (or use ``with``): it stops the lifecycle watch and releases the
    process-wide libvirt event loop thread.
    """

    def __init__(self, uri: str = DEFAULT_URI) -> None:
        self.uri = uri
        # The event implementation must exist before the connection is opened, or this
        # connection would never deliver lifecycle events (see events.py).
        events.acquire()
        try:
            self._conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            events.release()
            raise HypervisorUnavailable(f"cannot connect to {uri}: {exc}") from exc
        self._lock = threading.Lock()
        self._watch_ids: list[int] = []
        self._closed = False
        self._domain_type: str | None = None

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop watching, close the connection, release the event loop. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watch_ids, self._watch_ids = self._watch_ids, []
        for callback_id in watch_ids:
            try:
                self._conn.domainEventDeregisterAny(callback_id)
            except libvirt.libvirtError:
                pass
        try:
            self._conn.close()
        except libvirt.libvirtError:
            pass
        events.release()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Hypervisor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- host -----------------------------------------------------------------------------

    def detect_domain_type(self) -> str:
        """``kvm`` when it really works, ``qemu`` (TCG emulation) otherwise; ``test`` on
        libvirt's test driver.

        kvm needs: the hypervisor's capabilities list it for x86_64 and, for a local URI,
        the host checks of kvm.local_kvm_usable() (CPU flags, /dev/kvm, a guest that runs).
        A remote host is trusted on its capabilities. Cached per instance.
        """
        if self._domain_type is not None:
            return self._domain_type
        try:
            caps = ET.fromstring(self._conn.getCapabilities())
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot read capabilities of {self.uri}: {exc}") from exc
        types: set[str] = set()
        any_arch_types: set[str] = set()
        for guest in caps.findall("guest"):
            arch = guest.find("arch")
            if guest.findtext("os_type") != "hvm" or arch is None:
                continue
            found = {d.get("type", "") for d in arch.findall("domain")}
            any_arch_types |= found
            if arch.get("name") == "x86_64":
                types |= found
        if "kvm" in types and (not _is_local_uri(self.uri) or local_kvm_usable()[0]):
            chosen = "kvm"
        elif "qemu" in types:
            chosen = "qemu"
        elif "test" in any_arch_types:
            # libvirt's test driver (test:///default) declares i686 only, accepts x86_64.
            chosen = "test"
        else:
            raise HypervisorError(f"{self.uri} offers no x86_64 hvm domain type ({types})")
        log.info("domain type for %s: %s", self.uri, chosen)
        self._domain_type = chosen
        return chosen

    # -- domains --------------------------------------------------------------------------

    def create_domain(self, spec: DomainSpec) -> DomainHandle:
        """Start a transient domain for ``spec``. Raises DomainCreateError (or its
        ForwardPortInUse subclass when the user-mode forward port is taken)."""
        xml = render_domain_xml(spec)
        try:
            self._conn.createXML(xml, 0)
        except libvirt.libvirtError as exc:
            message = str(exc)
            if _PORT_IN_USE.search(message):
                raise ForwardPortInUse(
                    f"forward port 127.0.0.1:{spec.forward_port} is taken: {message}",
                    port=spec.forward_port,
                    uuid=spec.uuid,
                ) from exc
            reason = "iso_unreadable" if _ISO_UNREADABLE.search(message) else "other"
            raise DomainCreateError(
                f"cannot create domain {spec.name} (ISO {spec.iso_path}): {message}",
                reason=reason,
                uuid=spec.uuid,
            ) from exc
        return DomainHandle(uuid=spec.uuid, name=spec.name, spec=spec, created_at=time.monotonic())

    def create_domain_on_free_port(
        self, spec: DomainSpec, ports: Iterable[int], *, attempts: int = 10
    ) -> DomainHandle:
        """Create a ``user`` network domain, picking its forward port from ``ports``.

        A port that looks free can still be refused (another QEMU got it first, TIME_WAIT):
        try random ports and move on when QEMU reports the forward rule failed.
        """
        candidates = list(ports)
        random.shuffle(candidates)
        last: ForwardPortInUse | None = None
        for port in candidates[: max(1, attempts)]:
            try:
                return self.create_domain(dataclasses.replace(spec, forward_port=port))
            except ForwardPortInUse as exc:
                last = exc
        raise last or DomainCreateError("no forward port to try", uuid=spec.uuid)

    def lookup(self, uuid: str) -> libvirt.virDomain:
        """The libvirt domain object (what the seed's ``getDomainDescriptor`` returns)."""
        return self._lookup(uuid)

    def _lookup(self, uuid: str) -> libvirt.virDomain:
        try:
            return self._conn.lookupByUUIDString(str(uuid))
        except libvirt.libvirtError as exc:
            if _is_no_domain(exc):
                raise DomainNotFound(f"no domain {uuid} on {self.uri}") from exc
            raise HypervisorError(f"cannot look up domain {uuid}: {exc}") from exc

    def destroy_domain(self, uuid: str) -> bool:
        """Force the domain off (gone, since transient). True if it was running.
        Idempotent: a missing domain is not an error."""
        try:
            dom = self._lookup(uuid)
        except DomainNotFound:
            return False
        try:
            dom.destroy()
        except libvirt.libvirtError as exc:
            if _is_no_domain(exc) or exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
                return False  # stopped meanwhile
            raise HypervisorError(f"cannot destroy domain {uuid}: {exc}") from exc
        # A persistent domain of ours (never made by us, but possible by hand) is removed too.
        try:
            if dom.isPersistent():
                dom.undefine()
        except libvirt.libvirtError:
            pass
        return True

    def shutdown_domain(self, uuid: str) -> None:
        """Ask the guest to power off (ACPI power button); returns at once."""
        try:
            self._lookup(uuid).shutdown()
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot shut down domain {uuid}: {exc}") from exc

    def is_active(self, uuid: str) -> bool:
        try:
            return bool(self._lookup(uuid).isActive())
        except DomainNotFound:
            return False
        except libvirt.libvirtError as exc:
            if _is_no_domain(exc):
                return False
            raise HypervisorError(f"cannot query domain {uuid}: {exc}") from exc

    def list_marked(self, owner: str | None = None) -> list[str]:
        """UUIDs of the domains carrying our marker (active or defined); with ``owner``,
        only those that server owns."""
        try:
            domains = self._conn.listAllDomains(0)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot list domains on {self.uri}: {exc}") from exc
        found = []
        for dom in domains:
            if not dom.name().startswith(DOMAIN_NAME_PREFIX):
                continue
            try:
                metadata = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, MARKER_NAMESPACE)
            except libvirt.libvirtError:
                continue  # no metadata of ours: someone else's "anweddol-..." domain
            if marker_uuid(metadata) is not None and (
                owner is None or marker_owner(metadata) == owner
            ):
                found.append(dom.UUIDString())
        return sorted(found)

    def domain_info(self, uuid: str) -> DomainInfo:
        dom = self._lookup(uuid)
        try:
            state, max_kib, mem_kib, vcpus, _cpu_time = dom.info()
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot read domain {uuid}: {exc}") from exc
        return DomainInfo(
            uuid=dom.UUIDString(),
            name=dom.name(),
            state=_STATE_NAMES.get(state, str(state)),
            memory_mib=mem_kib // 1024,
            max_memory_mib=max_kib // 1024,
            vcpus=vcpus,
        )

    def domain_xml(self, uuid: str) -> str:
        """The live XML of a domain (for diagnostics and tests)."""
        try:
            return self._lookup(uuid).XMLDesc(0)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot read domain {uuid}: {exc}") from exc

    # -- guest address --------------------------------------------------------------------

    def guest_address(
        self, spec: DomainSpec, *, deadline: float | None = None, poll_interval: float = 0.5
    ) -> tuple[str, int]:
        """Where the guest's SSH server is reachable from this host.

        ``user``: 127.0.0.1 and the forward port, at once. ``nat``: the IPv4 address from
        libvirt's DHCP leases of the bridge, polled until ``deadline`` (a time.monotonic()
        value; None = one look). Raises GuestTimeout.
        """
        if spec.network == "user":
            assert spec.forward_port is not None
            return LOOPBACK, spec.forward_port
        while True:
            address = self._lease_address(spec.uuid)
            if address is not None:
                return address, GUEST_SSH_PORT
            if deadline is None or time.monotonic() >= deadline:
                raise GuestTimeout(f"no DHCP lease for domain {spec.uuid} on {spec.network}")
            time.sleep(max(0.0, min(poll_interval, deadline - time.monotonic())))

    def _lease_address(self, uuid: str) -> str | None:
        dom = self._lookup(uuid)
        try:
            interfaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0)
        except libvirt.libvirtError as exc:
            if _is_no_domain(exc):
                raise DomainNotFound(f"domain {uuid} is gone") from exc
            return None
        for interface in (interfaces or {}).values():
            for addr in interface.get("addrs") or []:
                if addr.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4 and addr.get("addr"):
                    return addr["addr"]
        return None

    # -- lifecycle events -----------------------------------------------------------------

    def watch_stops(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(uuid)`` whenever one of our domains stops (guest poweroff,
        destroy, crash). Runs on libvirt's event thread: keep it short and non-blocking
        (tell an actor); exceptions are logged, not propagated. Ends with ``close()``.
        """

        def on_lifecycle(_conn, dom, event, _detail, _opaque) -> None:
            if event != libvirt.VIR_DOMAIN_EVENT_STOPPED:
                return
            try:
                # The name is cached in the domain object: no call to a domain that is gone.
                if not dom.name().startswith(DOMAIN_NAME_PREFIX):
                    return
                uuid = dom.UUIDString()
            except libvirt.libvirtError:
                return
            try:
                callback(uuid)
            except Exception:
                log.exception("watch_stops callback failed for %s", uuid)

        with self._lock:
            if self._closed:
                raise HypervisorError("hypervisor connection is closed")
            try:
                callback_id = self._conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle, None
                )
            except libvirt.libvirtError as exc:
                raise HypervisorError(f"cannot watch domain events on {self.uri}: {exc}") from exc
            self._watch_ids.append(callback_id)


__all__ = [
    "DEFAULT_URI",
    "DomainHandle",
    "DomainInfo",
    "Hypervisor",
    "MARKER_PREFIX",
]
