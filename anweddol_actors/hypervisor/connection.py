"""``Hypervisor``: one libvirt connection, the only code that talks to libvirt.

Domains are transient (``createXML``): destroying one leaves nothing defined. Every domain
we start carries our marker (name prefix + a ``<metadata>`` element in our namespace) so a
restarted server can find its own. Methods are thread-safe (libvirt connections are, and
libvirt-python releases the GIL during calls); no libvirt object leaves this module.

The connection survives libvirtd restarts. A lost connection is noticed three ways: the
close callback (a daemon that exits closes the socket: noticed at once), keepalive pings
(a daemon that hangs: noticed after ``KEEPALIVE_INTERVAL * KEEPALIVE_COUNT`` s), and a
call that fails on a connection that is no longer alive. From then on every call raises
:class:`HypervisorUnavailable` at once (without touching libvirt), while one background
thread reopens the connection with backoff (``RECONNECT_FIRST_DELAY`` doubling to
``RECONNECT_MAX_DELAY``), registers the lifecycle watches again on the new connection, and
calls the ``on_connect`` callbacks (the server reconciles there).
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

# A ping every 5 s, the connection declared dead after 3 unanswered: a daemon that hangs
# is noticed within about 20 s (one that exits closes the socket and is noticed at once).
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
# Reconnection: first try 0.5 s after the loss, then doubling up to one try every 10 s,
# until it works or close(): libvirtd usually comes back within a few seconds.
RECONNECT_FIRST_DELAY = 0.5
RECONNECT_MAX_DELAY = 10.0
# One attempt to open may hang (a daemon that accepts and never answers): bounded.
OPEN_TIMEOUT = 10.0

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


def one_line_error(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_alive(conn: libvirt.virConnect) -> bool:
    try:
        return conn.isAlive() == 1
    except libvirt.libvirtError:
        return False


def _open(uri: str, timeout: float) -> libvirt.virConnect:
    """``libvirt.open(uri)``, bounded by ``timeout``. Raises HypervisorUnavailable.

    The attempt runs in a daemon thread: libvirt has no timeout of its own for opening,
    and a daemon that accepts but never answers would hold the caller for ever. A late
    success after the caller gave up is closed by that thread.
    """
    lock = threading.Lock()
    outcome: dict[str, object] = {}

    def attempt() -> None:
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            with lock:
                outcome["error"] = exc
            return
        with lock:
            if not outcome.get("abandoned"):
                outcome["conn"] = conn
                return
        try:
            conn.close()
        except libvirt.libvirtError:
            pass

    thread = threading.Thread(target=attempt, name="libvirt-open", daemon=True)
    thread.start()
    thread.join(timeout)
    with lock:
        if "conn" in outcome:
            return outcome["conn"]  # type: ignore[return-value]
        if "error" in outcome:
            raise HypervisorUnavailable(f"cannot connect to {uri}: {outcome['error']}")
        outcome["abandoned"] = True
    raise HypervisorUnavailable(f"cannot connect to {uri}: no answer within {timeout:g} s")


def _is_local_uri(uri: str) -> bool:
    # "qemu:///system" has no host; "qemu+ssh://host/system" does.
    return not urlparse(uri).netloc


class Hypervisor:
    """A libvirt connection and the container-domain operations on it.

    ``close()`` when done (or use ``with``): it stops the lifecycle watch, the
    reconnection, and releases the process-wide libvirt event loop thread.

    ``wait_for_connection``: when the URI does not answer now, keep trying in the
    background (the object exists, every call raises HypervisorUnavailable meanwhile)
    instead of raising HypervisorUnavailable here.
    """

    def __init__(self, uri: str = DEFAULT_URI, *, wait_for_connection: bool = False) -> None:
        self.uri = uri
        self._lock = threading.Lock()
        self._conn: libvirt.virConnect | None = None
        # The lifecycle callbacks, kept across reconnections, and their registrations on
        # the current connection.
        self._watchers: list[Callable] = []
        self._watch_ids: list[int] = []
        self._on_connect: list[Callable[[], None]] = []
        self._closed = False
        self._stop = threading.Event()
        self._reconnecting = False
        self._reconnector: threading.Thread | None = None
        # Lost connections with their watch ids, closed off the event thread.
        self._dead: list[tuple[libvirt.virConnect, list[int]]] = []
        self._connections = 0
        self._domain_type: str | None = None
        # The event implementation must exist before the connection is opened, or this
        # connection would never deliver lifecycle events nor answer keepalives (events.py).
        events.acquire()
        try:
            conn = _open(uri, OPEN_TIMEOUT)
        except HypervisorUnavailable as exc:
            if not wait_for_connection:
                events.release()
                raise
            log.warning("%s; retrying in the background", exc)
            with self._lock:
                self._start_reconnecting()
            return
        try:
            self._install(conn)
        except libvirt.libvirtError as exc:
            self._discard(conn)
            events.release()
            raise HypervisorUnavailable(f"cannot set up the connection to {uri}: {exc}") from exc

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop watching and reconnecting, close the connection, release the event loop.
        Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            conn, self._conn = self._conn, None
            watch_ids, self._watch_ids = self._watch_ids, []
            reconnector = self._reconnector
        if reconnector is not None and reconnector is not threading.current_thread():
            reconnector.join(timeout=OPEN_TIMEOUT + 1)
        if conn is not None:
            self._discard(conn, watch_ids)
        self._dispose_dead()
        events.release()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def connected(self) -> bool:
        """Whether a live connection is open now (False while reconnecting)."""
        return self._conn is not None

    @property
    def connections(self) -> int:
        """How many connections were opened so far (more than 1: reconnected)."""
        return self._connections

    def check(self) -> None:
        """Raise HypervisorUnavailable, without asking libvirt, when it is unreachable."""
        self._connection()

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` now if connected, and after every later (re)connection.

        Runs on the reconnecting thread: keep it short (tell an actor); exceptions are
        logged. Exactly once per connection, whatever the race with a reconnection.
        """
        with self._lock:
            self._on_connect.append(callback)
            now = self._conn is not None
        if now:
            self._notify([callback])

    def __enter__(self) -> Hypervisor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the connection and its loss ---------------------------------------------------

    def _connection(self) -> libvirt.virConnect:
        conn = self._conn
        if conn is None:
            if self._closed:
                raise HypervisorError("hypervisor connection is closed")
            raise HypervisorUnavailable(f"{self.uri} is unreachable (reconnecting)")
        return conn

    def _install(self, conn: libvirt.virConnect) -> None:
        """Arm loss detection and the watches on a fresh connection, then publish it and
        tell the ``on_connect`` callbacks. Raises libvirtError (nothing published)."""
        try:
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        except libvirt.libvirtError:
            pass  # drivers without keepalive (test:///, local ones): the close callback stays
        conn.registerCloseCallback(self._closed_by_libvirt, None)
        with self._lock:
            watchers = list(self._watchers)
        watch_ids = []
        try:
            for watcher in watchers:
                watch_ids.append(self._register_watch(conn, watcher))
        except libvirt.libvirtError:
            conn.unregisterCloseCallback()
            raise
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                self._conn = conn
                self._watch_ids = watch_ids
                self._connections += 1
                self._reconnecting = False
                callbacks = list(self._on_connect)
                # Watches added while this connection was being set up.
                late = self._watchers[len(watchers) :]
        if closed:
            self._discard(conn)
            return
        if not _is_alive(conn):
            # Lost while being set up: its close callback found it unpublished and let go.
            self._lost(conn, "lost while being set up")
            return
        for watcher in late:
            try:
                self._add_watch(conn, watcher)
            except HypervisorError as exc:
                log.warning("%s", exc)  # lost again: the next connection registers it
        if self._connections > 1:
            log.warning("libvirt connection to %s is back", self.uri)
        self._notify(callbacks)

    def _notify(self, callbacks: list[Callable[[], None]]) -> None:
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("on_connect callback failed for %s", self.uri)

    def _closed_by_libvirt(self, conn: libvirt.virConnect, reason: int, _opaque: object) -> None:
        # On libvirt's event thread: only bookkeeping here, the closing happens elsewhere.
        self._lost(conn, f"closed by libvirt (reason {reason})")

    def _lost(self, conn: libvirt.virConnect, why: str) -> None:
        """``conn`` is dead: stop using it and start reconnecting (once per connection)."""
        with self._lock:
            if self._closed or self._conn is not conn:
                return  # closed on purpose, or already replaced
            self._conn = None
            self._dead.append((conn, self._watch_ids))
            self._watch_ids = []
            self._start_reconnecting()
        log.warning("libvirt connection to %s lost (%s): reconnecting", self.uri, why)

    def _start_reconnecting(self) -> None:
        # Under self._lock.
        if self._reconnecting or self._closed:
            return
        self._reconnecting = True
        self._reconnector = threading.Thread(
            target=self._reconnect, name="libvirt-reconnect", daemon=True
        )
        self._reconnector.start()

    def _reconnect(self) -> None:
        delay = RECONNECT_FIRST_DELAY
        while not self._stop.wait(delay):
            self._dispose_dead()
            try:
                conn = _open(self.uri, OPEN_TIMEOUT)
            except HypervisorUnavailable as exc:
                log.info("%s; next try in %g s", exc, min(delay * 2, RECONNECT_MAX_DELAY))
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            try:
                self._install(conn)
            except libvirt.libvirtError as exc:
                log.info("libvirt connection to %s lost again while set up: %s", self.uri, exc)
                self._discard(conn)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            return

    def _dispose_dead(self) -> None:
        with self._lock:
            dead, self._dead = self._dead, []
        for conn, watch_ids in dead:
            self._discard(conn, watch_ids)

    @staticmethod
    def _discard(conn: libvirt.virConnect, watch_ids: list[int] = ()) -> None:
        # Each registered callback holds a reference on the connection: left registered,
        # a dead connection is never freed and its descriptors leak, one set per outage.
        # Deregistering works on a dead connection too (the local half is done first).
        steps = [lambda i=i: conn.domainEventDeregisterAny(i) for i in watch_ids]
        for step in (*steps, conn.unregisterCloseCallback, conn.close):
            try:
                step()
            except libvirt.libvirtError:
                pass

    def _failure(
        self, conn: libvirt.virConnect, exc: libvirt.libvirtError, message: str
    ) -> HypervisorError:
        """The error to raise for a failed call: HypervisorUnavailable when the connection
        died under it (and the reconnection starts), HypervisorError otherwise."""
        if not _is_alive(conn):
            self._lost(conn, one_line_error(exc))
            return HypervisorUnavailable(f"{message}: libvirt connection lost: {exc}")
        return HypervisorError(f"{message}: {exc}")

    # -- host -----------------------------------------------------------------------------

    def free_memory(self) -> int | None:
        """The host's free memory in bytes (``getFreeMemory``), or None when libvirt cannot
        say (unreachable, or a driver without it). Bounded like every call on a remote
        connection: the keepalive ends a call to a host that stopped answering."""
        conn = self._conn
        if conn is None:
            return None
        try:
            return int(conn.getFreeMemory())
        except libvirt.libvirtError:
            return None

    def detect_domain_type(self) -> str:
        """``kvm`` when it really works, ``qemu`` (TCG emulation) otherwise; ``test`` on
        libvirt's test driver.

        kvm needs: the hypervisor's capabilities list it for x86_64 and, for a local URI,
        the host checks of kvm.local_kvm_usable() (CPU flags, /dev/kvm, a guest that runs).
        A remote host is trusted on its capabilities. Cached per instance.
        """
        if self._domain_type is not None:
            return self._domain_type
        conn = self._connection()
        try:
            caps = ET.fromstring(conn.getCapabilities())
        except libvirt.libvirtError as exc:
            raise self._failure(conn, exc, f"cannot read capabilities of {self.uri}") from exc
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
        ForwardPortInUse subclass when the user-mode forward port is taken), or
        HypervisorUnavailable (libvirt unreachable: whether the domain was made is then
        unknown, so the caller destroys it once libvirt is back)."""
        xml = render_domain_xml(spec)
        conn = self._connection()
        try:
            conn.createXML(xml, 0)
        except libvirt.libvirtError as exc:
            if not _is_alive(conn):
                raise self._failure(conn, exc, f"cannot create domain {spec.name}") from exc
            message = str(exc)
            if _PORT_IN_USE.search(message):
                raise ForwardPortInUse(
                    f"forward port {spec.forward_address}:{spec.forward_port} is taken: {message}",
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
        conn = self._connection()
        try:
            return conn.lookupByUUIDString(str(uuid))
        except libvirt.libvirtError as exc:
            if _is_no_domain(exc):
                raise DomainNotFound(f"no domain {uuid} on {self.uri}") from exc
            raise self._failure(conn, exc, f"cannot look up domain {uuid}") from exc

    def _domain_failure(
        self, dom: libvirt.virDomain, exc: libvirt.libvirtError, message: str
    ) -> HypervisorError:
        return self._failure(dom.connect(), exc, message)

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
            raise self._domain_failure(dom, exc, f"cannot destroy domain {uuid}") from exc
        # A persistent domain of ours (never made by us, but possible by hand) is removed too.
        try:
            if dom.isPersistent():
                dom.undefine()
        except libvirt.libvirtError:
            pass
        return True

    def shutdown_domain(self, uuid: str) -> None:
        """Ask the guest to power off (ACPI power button); returns at once."""
        dom = self._lookup(uuid)
        try:
            dom.shutdown()
        except libvirt.libvirtError as exc:
            raise self._domain_failure(dom, exc, f"cannot shut down domain {uuid}") from exc

    def is_active(self, uuid: str) -> bool:
        """Whether the domain runs; raises HypervisorUnavailable when libvirt cannot say."""
        try:
            dom = self._lookup(uuid)
        except DomainNotFound:
            return False
        try:
            return bool(dom.isActive())
        except libvirt.libvirtError as exc:
            if _is_no_domain(exc):
                return False
            raise self._domain_failure(dom, exc, f"cannot query domain {uuid}") from exc

    def list_marked(self, owner: str | None = None) -> list[str]:
        """UUIDs of the domains carrying our marker (active or defined); with ``owner``,
        only those that server owns."""
        conn = self._connection()
        try:
            domains = conn.listAllDomains(0)
        except libvirt.libvirtError as exc:
            raise self._failure(conn, exc, f"cannot list domains on {self.uri}") from exc
        found = []
        for dom in domains:
            if not dom.name().startswith(DOMAIN_NAME_PREFIX):
                continue
            try:
                metadata = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, MARKER_NAMESPACE)
            except libvirt.libvirtError as exc:
                if not _is_alive(conn):  # a partial list would hide domains of ours
                    raise self._failure(conn, exc, f"cannot list domains on {self.uri}") from exc
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
            raise self._domain_failure(dom, exc, f"cannot read domain {uuid}") from exc
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
        dom = self._lookup(uuid)
        try:
            return dom.XMLDesc(0)
        except libvirt.libvirtError as exc:
            raise self._domain_failure(dom, exc, f"cannot read domain {uuid}") from exc

    # -- guest address --------------------------------------------------------------------

    def guest_address(
        self, spec: DomainSpec, *, deadline: float | None = None, poll_interval: float = 0.5
    ) -> tuple[str, int]:
        """Where the guest's SSH server is reachable from this host.

        ``user``: the forward address (127.0.0.1 unless the spec says otherwise) and the
        forward port, at once. ``nat``: the IPv4 address from
        libvirt's DHCP leases of the bridge, polled until ``deadline`` (a time.monotonic()
        value; None = one look). Raises GuestTimeout.
        """
        if spec.network == "user":
            assert spec.forward_port is not None
            return spec.forward_address, spec.forward_port
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
            if not _is_alive(dom.connect()):
                raise self._domain_failure(dom, exc, f"cannot read leases of {uuid}") from exc
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
        (tell an actor); exceptions are logged, not propagated. Ends with ``close()``;
        registered again on every new connection after a loss. While libvirt is
        unreachable the watch waits for the connection (stops missed meanwhile are the
        caller's to poll for once ``on_connect`` calls it).
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
            self._watchers.append(on_lifecycle)
            conn = self._conn
        if conn is not None:  # else registered by _install once connected
            self._add_watch(conn, on_lifecycle)

    @staticmethod
    def _register_watch(conn: libvirt.virConnect, watcher: Callable) -> int:
        return conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, watcher, None
        )

    def _add_watch(self, conn: libvirt.virConnect, watcher: Callable) -> None:
        """Register ``watcher`` on the published connection ``conn``. Outside the lock: a
        libvirt call must not hold up the event thread's loss notice."""
        try:
            callback_id = self._register_watch(conn, watcher)
        except libvirt.libvirtError as exc:
            # The next connection registers it (if this one is gone); else it is a bug.
            raise self._failure(conn, exc, f"cannot watch domain events on {self.uri}") from exc
        with self._lock:
            if self._conn is conn:
                self._watch_ids.append(callback_id)
                return
        # Lost meanwhile: the next connection registers every watcher again.


__all__ = [
    "DEFAULT_URI",
    "DomainHandle",
    "DomainInfo",
    "Hypervisor",
    "MARKER_PREFIX",
]
