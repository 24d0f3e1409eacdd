"""Seed-compatible virtualization façades (reference/api/virtualization.md).

``ContainerInstance`` and ``EndpointShellInstance`` are thin handles on a container actor
and an endpoint shell actor: every call is a message to the actor, so handlers may call
them from any thread — but never from inside those actors (DESIGN.md, threading rules).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid as uuid_module
from typing import Any

from anweddol_actors.actors.container import ContainerActor, ContainerSettings
from anweddol_actors.actors.endpoint_shell import EndpointShellActor
from anweddol_actors.guest.shell import generate_credentials
from anweddol_actors.hypervisor import Hypervisor, wait_for_ssh_banner
from anweddol_actors.journal import Journal

DEFAULT_LIBVIRT_DRIVER_URI = "qemu:///system"
DEFAULT_CONTAINER_ENDPOINT_USERNAME = "endpoint"
DEFAULT_CONTAINER_ENDPOINT_PASSWORD = "endpoint"
DEFAULT_CONTAINER_ENDPOINT_LISTEN_PORT = 22
DEFAULT_NAT_INTERFACE_NAME = "virbr0"
# The seed defaults to "kvm"; we detect (kvm where it works, qemu emulation elsewhere).
DEFAULT_DOMAIN_TYPE = "auto"
DEFAULT_CONTAINER_MAX_TRYOUT = 20
DEFAULT_CONTAINER_MEMORY = 2048
DEFAULT_CONTAINER_VCPUS = 2
# The seed generated 120 characters; dropbear refuses passwords over 100 at login.
DEFAULT_CONTAINER_CLIENT_SSH_PASSWORD_LENGTH = 100
DEFAULT_CONTAINER_WAIT_AVAILABLE = True
DEFAULT_STORE_CONTAINER = True
DEFAULT_STORE_CREDENTIALS = True
DEFAULT_STOP_CONTAINER_DOMAIN = False
DEFAULT_OPEN_SHELL = True

# Seconds per "tryout" of the seed's wait_max_tryout (it slept about this long per try).
_SECONDS_PER_TRYOUT = 6.0
# How often a boot wait checks that the domain is still alive.
_READY_SLICE = 2.0

_checksums: dict[tuple[str, int, int], str] = {}
_checksums_lock = threading.Lock()


def iso_sha256(path: str) -> str:
    """SHA-256 of an ISO, streamed, and cached per (path, size, mtime).

    The seed read the whole ISO into memory on every CREATE (PROTOCOL.md §4).
    """
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    with _checksums_lock:
        if key in _checksums:
            return _checksums[key]
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _checksums_lock:
        _checksums[key] = value
    return value


class ContainerInstance:
    """A container: its settings, its domain, its endpoint shell."""

    def __init__(
        self,
        iso_path: str,
        container_uuid: str | None = None,
        memory: int = DEFAULT_CONTAINER_MEMORY,
        vcpus: int = DEFAULT_CONTAINER_VCPUS,
        nat_interface_name: str = DEFAULT_NAT_INTERFACE_NAME,
        *,
        journal: Journal | None = None,
        hypervisor: Hypervisor | None = None,
        network_mode: str = "user",
        domain_type: str = DEFAULT_DOMAIN_TYPE,
        shell_timeout: float = 10.0,
        guest_port_range: tuple[int, int] = (30000, 39999),
        lifecycle: Any = None,
        owner: str | None = None,
    ) -> None:
        self._lifecycle = lifecycle  # a resumed one when a restarted server adopts it
        self._uuid = container_uuid or str(uuid_module.uuid4())
        self._journal = journal if journal is not None else Journal(":memory:")
        self._hypervisor = hypervisor
        self._domain_type = domain_type
        self._shell_timeout = shell_timeout
        self._settings = ContainerSettings(
            iso_path=iso_path,
            memory_mib=memory,
            vcpus=vcpus,
            domain_type=domain_type,
            network_mode=network_mode,
            nat_interface_name=nat_interface_name,
            guest_port_range=guest_port_range,
            owner=owner,
        )
        self._actor = None
        self._endpoint_shell: EndpointShellInstance | None = None
        if hypervisor is not None:
            self._spawn(hypervisor)

    # -- plumbing (snake_case: not part of the seed) ---------------------------------

    def _spawn(self, hypervisor: Hypervisor) -> None:
        self._hypervisor = hypervisor
        if self._settings.domain_type == "auto":
            self._settings.domain_type = hypervisor.detect_domain_type()
        self._actor = ContainerActor.start(
            self._uuid, self._journal, hypervisor, self._settings, self._lifecycle
        ).proxy()

    @property
    def actor(self) -> Any:
        if self._actor is None:
            self._spawn(Hypervisor(DEFAULT_LIBVIRT_DRIVER_URI))
        return self._actor

    def _snapshot(self) -> dict:
        if self._actor is None:
            return {
                "uuid": self._uuid,
                "state": "created",
                "iso_path": self._settings.iso_path,
                "memory_mib": self._settings.memory_mib,
                "vcpus": self._settings.vcpus,
                "nat_interface_name": self._settings.nat_interface_name,
                "guest_address": None,
            }
        return self._actor.snapshot().get()

    def _configure(self, **changes: Any) -> None:
        if self._actor is None:
            for key, value in changes.items():
                setattr(self._settings, key, value)
        else:
            self._actor.configure(**changes).get()

    # -- seed API ------------------------------------------------------------------------

    def isDomainRunning(self) -> bool:
        return self._actor is not None and bool(self._actor.is_domain_running().get())

    def getNATInterfaceName(self) -> str:
        return self._snapshot()["nat_interface_name"]

    def getDomainDescriptor(self) -> Any:
        return None if self._actor is None else self._actor.domain().get()

    def getUUID(self) -> str:
        return self._uuid

    def getISOFilePath(self) -> str:
        return self._snapshot()["iso_path"]

    def getMAC(self) -> str | None:
        domain = self.getDomainDescriptor()
        if domain is None:
            raise RuntimeError("The container domain is not created")
        import xml.etree.ElementTree as ET

        mac = ET.fromstring(domain.XMLDesc()).find(".//interface/mac")
        return mac.get("address") if mac is not None else None

    def getIP(self) -> str | None:
        address = self._snapshot()["guest_address"]
        return address[0] if address else None

    def getMemory(self) -> int:
        return self._snapshot()["memory_mib"]

    def getVCPUs(self) -> int:
        return self._snapshot()["vcpus"]

    def setDomainDescriptor(self, domain_descriptor: Any) -> None:
        raise RuntimeError("the domain of a container is owned by its actor and cannot be set")

    def makeISOFileChecksum(self) -> str:
        path = self.getISOFilePath()
        if not path:
            raise RuntimeError("The ISO file path is not set")
        return iso_sha256(path)

    def setISOFilePath(self, iso_path: str) -> None:
        self._configure(iso_path=iso_path)

    def setMemory(self, memory: int) -> None:
        if not isinstance(memory, int) or memory < 1:
            raise ValueError("memory must be a positive number of MiB")
        self._configure(memory_mib=memory)

    def setVCPUs(self, vcpus: int) -> None:
        if not isinstance(vcpus, int) or vcpus < 1:
            raise ValueError("vcpus must be a positive integer")
        self._configure(vcpus=vcpus)

    def setNATInterfaceName(self, nat_interface_name: str) -> None:
        self._configure(nat_interface_name=nat_interface_name)

    def createEndpointShell(
        self,
        endpoint_username: str = DEFAULT_CONTAINER_ENDPOINT_USERNAME,
        endpoint_password: str = DEFAULT_CONTAINER_ENDPOINT_PASSWORD,
        endpoint_listen_port: int = DEFAULT_CONTAINER_ENDPOINT_LISTEN_PORT,
        open_shell: bool = DEFAULT_OPEN_SHELL,
    ) -> EndpointShellInstance:
        host, port = self._snapshot()["guest_address"] or (None, endpoint_listen_port)
        # In ``user`` mode the guest's port 22 is reached through QEMU's loopback forward.
        if self._settings.network_mode != "user":
            port = endpoint_listen_port
        shell = EndpointShellInstance(
            host,
            endpoint_username,
            endpoint_password,
            port,
            open_shell=open_shell,
            journal=self._journal,
            shell_id=f"{self._uuid}.shell",
            timeout=self._shell_timeout,
        )
        self._endpoint_shell = shell
        return shell

    def startDomain(
        self,
        wait_available: bool = DEFAULT_CONTAINER_WAIT_AVAILABLE,
        wait_max_tryout: int = DEFAULT_CONTAINER_MAX_TRYOUT,
        driver_uri: str = DEFAULT_LIBVIRT_DRIVER_URI,
        domain_type: str | None = None,
    ) -> None:
        if self._actor is None:
            self._spawn(Hypervisor(driver_uri))
        if domain_type is not None:
            self._configure(domain_type=domain_type)
        if self.isDomainRunning():
            raise RuntimeError("The container domain is already running")
        self._actor.start_domain().get()
        if wait_available:
            timeout = None if wait_max_tryout == -1 else wait_max_tryout * _SECONDS_PER_TRYOUT
            self.wait_ready(timeout)

    def stopDomain(self) -> None:
        if self._actor is not None:
            self._actor.stop_domain().get()

    # -- beyond the seed -------------------------------------------------------------

    def stop_actor(self) -> None:
        """Stop the container's actor (its on_stop destroys a domain still running)."""
        if self._actor is not None:
            self._actor.actor_ref.stop()

    def wait_ready(self, timeout: float | None) -> tuple[str, int]:
        """Block until the guest's SSH server sends its banner; the guest's address.

        Readiness is the banner, not a TCP connect: QEMU accepts on the forwarded port long
        before the guest listens (IMAGE-NOTES.md). The wait is cut in slices so that a
        domain that dies while booting fails the wait at once instead of at the deadline.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        host, port = self._actor.resolve_guest_address(timeout or 3600).get()
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
                        f"container {self._uuid}: no SSH banner from {host}:{port} "
                        f"within {timeout:.0f} s"
                    ) from None
                if not self.isDomainRunning():
                    raise RuntimeError(
                        f"container {self._uuid}: the domain stopped while booting"
                    ) from None


class EndpointShellInstance:
    """The administration SSH session to a container (seed ``EndpointShellInstance``)."""

    def __init__(
        self,
        container_ip: str | None,
        endpoint_username: str = DEFAULT_CONTAINER_ENDPOINT_USERNAME,
        endpoint_password: str = DEFAULT_CONTAINER_ENDPOINT_PASSWORD,
        endpoint_listen_port: int = DEFAULT_CONTAINER_ENDPOINT_LISTEN_PORT,
        open_shell: bool = DEFAULT_OPEN_SHELL,
        *,
        journal: Journal | None = None,
        shell_id: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._actor = EndpointShellActor.start(
            shell_id or f"{uuid_module.uuid4()}.shell",
            journal if journal is not None else Journal(":memory:"),
            container_ip,
            endpoint_listen_port,
            endpoint_username,
            endpoint_password,
            timeout,
        ).proxy()
        self._stored_credentials: tuple[str, str] | None = None
        if open_shell:
            self.openShell()

    @property
    def actor(self) -> Any:
        return self._actor

    def __enter__(self) -> EndpointShellInstance:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.closeShell()

    def _describe(self) -> dict:
        return self._actor.describe().get()

    def isClosed(self) -> bool:
        return self._describe()["state"] != "started"

    def getSSHClient(self) -> Any:
        shell = self._actor.shell.get()
        return None if shell is None else shell.client

    def getContainerIP(self) -> str:
        return self._describe()["host"]

    def getEndpointCredentials(self) -> tuple[str, str, int]:
        info = self._describe()
        return (info["username"], info["password"], info["port"])

    def getStoredClientSSHCredentials(self) -> tuple[str, str] | None:
        return self._stored_credentials

    def setContainerIP(self, ip: str) -> None:
        self._actor.set_target(host=ip).get()

    def setEndpointCredentials(self, username: str, password: str, listen_port: int) -> None:
        self._actor.set_credentials(username, password, listen_port).get()

    def storeClientSSHCredentials(self, client_ssh_username: str, client_ssh_password: str):
        self._stored_credentials = (client_ssh_username, client_ssh_password)

    def openShell(self) -> None:
        self._actor.open().get()

    def generateClientSSHCredentials(
        self,
        password_length: int = DEFAULT_CONTAINER_CLIENT_SSH_PASSWORD_LENGTH,
        store: bool = DEFAULT_STORE_CREDENTIALS,
    ) -> tuple[str, str]:
        credentials = generate_credentials(password_length)
        if store:
            self._stored_credentials = credentials
        return credentials

    def closeShell(self) -> None:
        self._actor.close().get()

    def executeCommand(self, command: str) -> tuple[str, str]:
        stdout, stderr, _status = self._actor.execute(command).get()
        return (stdout, stderr)

    def administrateContainer(self) -> None:
        if self._stored_credentials is None:
            raise RuntimeError("No client SSH credentials are stored on this instance")
        username, password = self._stored_credentials
        self._actor.administer(username, password, 22).get()

    def stop_actor(self) -> None:
        self._actor.actor_ref.stop()


__all__ = [
    "ContainerInstance",
    "EndpointShellInstance",
    "iso_sha256",
    "DEFAULT_LIBVIRT_DRIVER_URI",
    "DEFAULT_CONTAINER_ENDPOINT_USERNAME",
    "DEFAULT_CONTAINER_ENDPOINT_PASSWORD",
    "DEFAULT_CONTAINER_ENDPOINT_LISTEN_PORT",
    "DEFAULT_NAT_INTERFACE_NAME",
    "DEFAULT_DOMAIN_TYPE",
    "DEFAULT_CONTAINER_MAX_TRYOUT",
    "DEFAULT_CONTAINER_MEMORY",
    "DEFAULT_CONTAINER_VCPUS",
    "DEFAULT_CONTAINER_CLIENT_SSH_PASSWORD_LENGTH",
]
