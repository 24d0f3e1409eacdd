"""The hypervisor hosts the server places containers on: one libvirt link per host.

A server without a ``hypervisors:`` list has one host, ``local`` (``Settings.host_list``),
made from ``libvirt_uri``: it behaves as the one link the server always had. Each link is
its own ``Hypervisor`` (keepalive, close callback, reconnection with backoff), made on first
use and kept for the server's life, with its own ``when_connected`` listeners and its own
domain type ("auto" is detected per host at its connection: a remote host's capabilities
are its own).

A host is *ready* once its domains were reconciled with the journal (``recovered``, set by
engine/recovery.py) and its link answers: only a ready host gets new containers, and a
container's DESTROY needs its own host ready.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

from anweddol_actors.engine.settings import HostSettings, Settings
from anweddol_actors.errors import AnweddolError
from anweddol_actors.hypervisor import Hypervisor, HypervisorError

log = logging.getLogger(__name__)


class UnknownHost(AnweddolError, KeyError):
    """No host of that name in the configuration; its message is one line."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown host"


class HypervisorLink:
    """A host's libvirt connection, made on first use and kept for the server's life.

    It outlives libvirtd restarts (``Hypervisor`` reconnects by itself): callers ask
    :meth:`reachable` before starting what needs libvirt, and hear of every
    (re)connection through :meth:`when_connected`. A libvirt that does not answer when the
    link is made does not fail it: the connection is retried in the background.

    ``host``: the host it reaches (None: the server's ``libvirt_uri``). A host without a
    ``domain_type`` of its own follows the server's, and its detection ("auto") is written
    back to ``settings.domain_type``, as the single link of a one-host server always did.
    """

    def __init__(self, settings: Settings, host: HostSettings | None = None) -> None:
        self._settings = settings
        self._own_uri = None if host is None else host.libvirt_uri
        self._own_type = None if host is None else host.domain_type
        self._hypervisor: Hypervisor | None = None
        self._lock = threading.Lock()
        self._on_connect: list[Callable[[], None]] = []

    @property
    def uri(self) -> str:
        return self._own_uri if self._own_uri is not None else self._settings.libvirt_uri

    @property
    def domain_type(self) -> str:
        """This host's domain type: its own override, else the server's ("auto" until
        detected at the first connection)."""
        return self._own_type if self._own_type is not None else self._settings.domain_type

    def get(self) -> Hypervisor:
        """The connection (perhaps still reconnecting: its calls then raise
        HypervisorUnavailable)."""
        with self._lock:
            if self._hypervisor is not None:
                return self._hypervisor
            hypervisor = Hypervisor(self.uri, wait_for_connection=True)
            self._hypervisor = hypervisor
        # Outside the lock: when connected already, _connected runs here and takes it.
        hypervisor.on_connect(self._connected)
        return hypervisor

    def _connected(self) -> None:
        """At every (re)connection: learn the domain type once, then tell the listeners."""
        hypervisor = self._hypervisor
        if hypervisor is None:
            return
        if self.domain_type == "auto":
            try:
                detected = hypervisor.detect_domain_type()
            except HypervisorError as exc:
                log.warning("%s: domain type not detected yet: %s", self.uri, exc)
            else:
                if self._own_type is not None:
                    self._own_type = detected
                else:
                    self._settings.domain_type = detected
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


class Host:
    """One host: its settings, its link, and whether its domains were reconciled."""

    def __init__(self, settings: Settings, host: HostSettings, own_link: bool) -> None:
        self.settings = host
        self.name = host.name
        # The one host of a server without a list follows the server's settings live
        # (its domain type, its URI), exactly as the single link always did.
        self.link = HypervisorLink(settings, host if own_link else None)
        # Set once this host's domains were reconciled with the journal (recovery.py).
        self.recovered = threading.Event()

    def ready(self) -> bool:
        """Whether a request may use this host's libvirt now: reconciled, and it answers."""
        return self.recovered.is_set() and self.link.reachable()

    def iso_path(self, settings: Settings) -> str | None:
        return self.settings.iso_path or settings.iso_path


class Hosts:
    """The server's hosts, in configuration order (the first one also stands for "the"
    hypervisor of the seed façade and of containers journalled before hosts existed)."""

    def __init__(self, settings: Settings) -> None:
        own_links = bool(settings.hosts)
        self._hosts = {host.name: Host(settings, host, own_links) for host in settings.host_list()}
        if not self._hosts:
            raise AnweddolError("no hypervisor host configured")

    def __iter__(self) -> Iterator[Host]:
        return iter(list(self._hosts.values()))

    def __len__(self) -> int:
        return len(self._hosts)

    @property
    def first(self) -> Host:
        return next(iter(self._hosts.values()))

    def names(self) -> list[str]:
        return list(self._hosts)

    def get(self, name: str | None) -> Host:
        """The host called ``name`` (None: the first one); ``UnknownHost`` when none is."""
        if name is None:
            return self.first
        host = self._hosts.get(name)
        if host is None:
            known = ", ".join(self._hosts)
            raise UnknownHost(f"no host named {name!r} (known: {known})")
        return host

    def name_in(self, data: dict | None) -> str:
        """The host a journalled container's data names; a container journalled before
        hosts existed (no ``"host"``), or on a host no longer configured, is the first
        host's (a server without a list had only that one)."""
        name = (data or {}).get("host")
        return name if isinstance(name, str) and name in self._hosts else self.first.name

    def limits(self) -> dict[str, int | None]:
        """Each host's ``max_containers`` (None: no limit of its own)."""
        return {name: host.settings.max_containers for name, host in self._hosts.items()}

    def close(self) -> None:
        for host in self:
            host.link.close()
