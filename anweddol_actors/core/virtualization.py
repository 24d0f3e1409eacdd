"""Seed-compatible virtualization façades (reference/api/virtualization.md).

``ContainerInstance`` and ``EndpointShellInstance`` are thin handles on a container actor
and an endpoint shell actor: every call is a message to the actor, so handlers may call
them from any thread — but never from inside those actors (DESIGN.md, threading rules).
The server hands handlers handles on its own actors; a seed user may also build a
standalone one, which gets its own in-memory journal and libvirt connection.
"""

from __future__ import annotations

import uuid as uuid_module
import xml.etree.ElementTree as ET
from dataclasses import asdict
from typing import Any

from anweddol_actors.actors.container import ContainerSettings, wait_ready
from anweddol_actors.engine.entities import start_container_with, start_shell_with
from anweddol_actors.hypervisor import Hypervisor
from anweddol_actors.image.checksum import iso_sha256
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
        actor: Any = None,
        context: int | None = None,
    ) -> None:
        """``actor``: a handle on a container actor the server runs (what handlers get);
        without it, a standalone container whose actor starts with ``startDomain``.
        ``context``: the seed context of the handler given this instance, journalled with
        the transitions its calls fire (a start in ``on_container_created`` is the CREATE's)."""
        self._actor = actor
        self._context = context
        self._uuid = (
            actor.uuid.get() if actor is not None else container_uuid or str(uuid_module.uuid4())
        )
        self._settings = ContainerSettings(
            iso_path=iso_path,
            memory_mib=memory,
            vcpus=vcpus,
            domain_type=DEFAULT_DOMAIN_TYPE,
            nat_interface_name=nat_interface_name,
        )
        self._journal: Journal | None = None

    @classmethod
    def of(cls, actor: Any, context: int | None = None) -> ContainerInstance:
        return cls("", actor=actor, context=context)

    @property
    def actor(self) -> Any:
        return self._actor

    def _snapshot(self) -> dict:
        if self._actor is None:
            return {"state": "created", "guest_address": None, **asdict(self._settings)}
        return self._actor.snapshot().get()

    def _configure(self, **changes: Any) -> None:
        if self._actor is None:
            for key, value in changes.items():
                setattr(self._settings, key, value)
        else:
            self._actor.configure(**changes).get()

    def _spawn(self, driver_uri: str) -> None:
        self._journal = Journal(":memory:")
        self._actor = start_container_with(
            self._journal, Hypervisor(driver_uri), self._settings, self._uuid
        )
        self._actor.create().get()

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
        snapshot = self._snapshot()
        host, port = snapshot["guest_address"] or (None, endpoint_listen_port)
        # In ``user`` mode the guest's port 22 is reached through QEMU's loopback forward.
        if snapshot["network_mode"] != "user":
            port = endpoint_listen_port
        return EndpointShellInstance(
            host,
            endpoint_username,
            endpoint_password,
            port,
            open_shell=open_shell,
            journal=self._journal,
            shell_id=f"{self._uuid}.shell",
        )

    def startDomain(
        self,
        wait_available: bool = DEFAULT_CONTAINER_WAIT_AVAILABLE,
        wait_max_tryout: int = DEFAULT_CONTAINER_MAX_TRYOUT,
        driver_uri: str = DEFAULT_LIBVIRT_DRIVER_URI,
        domain_type: str | None = None,
    ) -> None:
        if domain_type is not None:
            self._configure(domain_type=domain_type)
        if self._actor is None:
            self._spawn(driver_uri)
        if self.isDomainRunning():
            raise RuntimeError("The container domain is already running")
        # Through the container's machine: the ``start`` is journalled before the domain
        # exists, and a CREATE that sees it started goes on without starting it again.
        self._actor.start_domain(self._context).get()
        if wait_available:
            timeout = None if wait_max_tryout == -1 else wait_max_tryout * _SECONDS_PER_TRYOUT
            wait_ready(self._actor, self._uuid, timeout)

    def stopDomain(self) -> None:
        if self._actor is not None:
            self._actor.stop_domain(self._context).get()

    # -- beyond the seed -------------------------------------------------------------

    def stop_actor(self) -> None:
        """Stop the container's actor (its on_stop destroys a domain still running)."""
        if self._actor is not None:
            self._actor.actor_ref.stop()


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
        actor: Any = None,
    ) -> None:
        """``actor``: a handle on a shell actor the server runs (what handlers get)."""
        if actor is None:
            actor = start_shell_with(
                journal if journal is not None else Journal(":memory:"),
                shell_id or f"{uuid_module.uuid4()}.shell",
                container_ip,
                endpoint_listen_port,
                endpoint_username,
                endpoint_password,
                timeout,
            )
            actor.create().get()
            if open_shell:
                actor.open().get()
        self._actor = actor

    @classmethod
    def of(cls, actor: Any) -> EndpointShellInstance:
        return cls(None, actor=actor)

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
        return self._actor.ssh_client().get()

    def getContainerIP(self) -> str:
        return self._describe()["host"]

    def getEndpointCredentials(self) -> tuple[str, str, int]:
        info = self._describe()
        return (info["username"], info["password"], info["port"])

    def getStoredClientSSHCredentials(self) -> tuple[str, str] | None:
        return self._describe()["client_credentials"]

    def setContainerIP(self, ip: str) -> None:
        self._actor.set_target(host=ip).get()

    def setEndpointCredentials(self, username: str, password: str, listen_port: int) -> None:
        self._actor.set_credentials(username, password, listen_port).get()

    def storeClientSSHCredentials(self, client_ssh_username: str, client_ssh_password: str):
        self._actor.store_client_credentials(client_ssh_username, client_ssh_password).get()

    def openShell(self) -> None:
        self._actor.open().get()

    def generateClientSSHCredentials(
        self,
        password_length: int = DEFAULT_CONTAINER_CLIENT_SSH_PASSWORD_LENGTH,
        store: bool = DEFAULT_STORE_CREDENTIALS,
    ) -> tuple[str, str]:
        return tuple(self._actor.generate_client_credentials(password_length, store).get())

    def closeShell(self) -> None:
        self._actor.close().get()

    def executeCommand(self, command: str) -> tuple[str, str]:
        stdout, stderr, _status = self._actor.execute(command).get()
        return (stdout, stderr)

    def administrateContainer(self) -> None:
        self._actor.administer(22).get()

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
