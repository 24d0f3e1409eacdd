"""The engine: settings, journal, keys, the supervisor's registry, listener and reaper.

``ServerInterface`` (the seed façade) owns one engine and forwards to it. The engine
starts its parts in dependency order and stops them in reverse.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pykka

from anweddol_actors.actors.registry import Registry
from anweddol_actors.actors.session import SessionActor
from anweddol_actors.core.crypto import RSAWrapper
from anweddol_actors.engine.events import CONTEXT_AUTOMATIC_ACTION, EventBus
from anweddol_actors.engine.listener import Listener
from anweddol_actors.journal import Journal, database_path
from anweddol_actors.lifecycle import Lifecycle

log = logging.getLogger(__name__)


def _owner_of(database: str | None) -> str:
    """This server's mark on its domains: stable for a journal file (so a restart finds
    its orphans), random for an in-memory journal."""
    if database is None or database_path(database) == ":memory:":
        return uuid.uuid4().hex[:16]
    where = f"{socket.gethostname()}:{os.path.realpath(database_path(database))}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]


@dataclass
class Settings:
    """Everything the engine needs; built from the seed's arguments or a config file."""

    iso_path: str | None = None
    bind_address: str = ""
    listen_port: int = 6150
    client_timeout: float | None = 10
    max_message_size: int = 1 << 20
    libvirt_uri: str = "qemu:///system"
    network_mode: str = "user"
    domain_type: str = "auto"
    nat_interface_name: str = "virbr0"
    # The seed's container defaults; the embedded configuration of `serve` sizes them for
    # the dev image (256 MiB, 1 vCPU).
    container_memory: int = 2048
    container_vcpus: int = 2
    max_containers: int | None = 6
    port_range: tuple[int, int] = (10000, 20000)
    forward_bind_address: str = ""
    guest_port_range: tuple[int, int] = (30000, 39999)
    endpoint_username: str = "endpoint"
    endpoint_password: str = "endpoint"
    endpoint_listen_port: int = 22
    password_length: int = 100
    ready_timeout: float = 120.0
    shell_timeout: float = 15.0
    database: str = ":memory:"
    on_start_live_containers: str = "destroy"
    reaper_poll_interval: float = 5.0
    ip_allows: Callable[[str], bool] | None = field(default=None, repr=False)


class Engine:
    def __init__(
        self,
        settings: Settings,
        *,
        passive: bool = False,
        rsa_wrapper: RSAWrapper | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.settings = settings
        self.passive = passive
        self.events = EventBus()
        self.request_handlers: dict[str, Callable[..., Any]] = {}
        self.journal = journal if journal is not None else Journal(settings.database)
        # Passive servers talk to no client: no key pair (the seed's rule).
        self.rsa_wrapper = rsa_wrapper if (rsa_wrapper is not None or passive) else RSAWrapper()
        self.lifecycle = Lifecycle("server", uuid.uuid4().hex, self.journal)
        self.owner = _owner_of(settings.database if journal is None else None)
        self.registry = Registry.start(settings.max_containers).proxy()
        self._hypervisor = None
        self._hypervisor_lock = threading.Lock()
        self._runtime_errors = 0
        self._errors_lock = threading.Lock()
        self._started_at: float | None = None
        self._listener: Listener | None = None
        self._reaper = None
        self._stopped = threading.Event()
        self._state_lock = threading.Lock()
        self._stopping = False

    # -- shared by sessions and requests -----------------------------------------------

    @property
    def client_timeout(self) -> float | None:
        return self.settings.client_timeout

    @property
    def max_message_size(self) -> int:
        return self.settings.max_message_size

    @property
    def running(self) -> bool:
        return self.lifecycle.state == "started"

    def fire(self, event: str, context: int, data: dict | None = None) -> Any:
        return self.events.fire(event, context, data)

    def request_handler(self, verb: str) -> Callable[..., Any] | None:
        return self.request_handlers.get(verb)

    def count_runtime_error(self) -> None:
        with self._errors_lock:
            self._runtime_errors += 1

    @property
    def runtime_errors(self) -> int:
        return self._runtime_errors

    def uptime(self) -> int:
        return 0 if self._started_at is None else int(time.monotonic() - self._started_at)

    def available_slots(self) -> int | None:
        return self.registry.available().get()

    @property
    def hypervisor(self):
        """The libvirt connection, opened on first use (STAT-only servers never need it)."""
        with self._hypervisor_lock:
            if self._hypervisor is None:
                from anweddol_actors.hypervisor import Hypervisor

                self._hypervisor = Hypervisor(self.settings.libvirt_uri)
                if self.settings.domain_type == "auto":
                    self.settings.domain_type = self._hypervisor.detect_domain_type()
                if self._reaper is not None:
                    self._reaper.watch(self._hypervisor)
            return self._hypervisor

    def new_container(self):
        from anweddol_actors.core.virtualization import ContainerInstance

        settings = self.settings
        if not settings.iso_path:
            raise RuntimeError("no container ISO is configured")
        return ContainerInstance(
            settings.iso_path,
            None,
            settings.container_memory,
            settings.container_vcpus,
            settings.nat_interface_name,
            journal=self.journal,
            hypervisor=self.hypervisor,
            network_mode=settings.network_mode,
            domain_type=settings.domain_type,
            shell_timeout=settings.shell_timeout,
            guest_port_range=settings.guest_port_range,
            owner=self.owner,
        )

    def new_forwarder(self, container_uuid: str, host: str, port: int):
        from anweddol_actors.core.port_forwarding import ForwarderInstance

        return ForwarderInstance(
            None,
            host,
            container_uuid,
            port,
            journal=self.journal,
            port_range=self.settings.port_range,
            bind_address=self.settings.forward_bind_address,
        )

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the parts (reconcile, reaper, listener), then declare the server started.

        The ``start`` transition comes last, so a server seen running has every part
        running, and a stop can never overtake a start that is still half done.
        """
        with self._state_lock:
            self._stopped.clear()
            self.reconcile()
            if not self.passive:
                self._listener = Listener(
                    self.settings.bind_address,
                    self.settings.listen_port,
                    self._spawn_session,
                    allows=self.settings.ip_allows,
                )
            self._start_reaper()
            if self._listener is not None:
                self._listener.start()
            self._started_at = time.monotonic()
            try:
                port = self._listener.address[1] if self._listener is not None else None
                self.lifecycle.fire("start", data={"listen_port": port})
            except Exception:
                self._stop_parts()
                raise

    @property
    def listen_address(self) -> tuple:
        return self._listener.address if self._listener is not None else ("", 0)

    def _spawn_session(self, sock, address) -> None:
        SessionActor.start(self).proxy().serve_socket(sock, address)

    def handle_client(self, client, asynchronous: bool) -> None:
        if asynchronous:
            SessionActor.start(self).proxy().serve_client(client)
        else:
            from anweddol_actors.actors.session import Session

            Session(self).serve_client(client)

    def stop(self) -> list[BaseException]:
        """Stop in reverse order; returns the errors met (the façade decides what to do)."""
        with self._state_lock:
            return self._stop()

    def _stop_parts(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        self._stop_reaper()
        self._started_at = None

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _stop(self) -> list[BaseException]:
        errors: list[BaseException] = []
        self._stopping = True
        self._stop_parts()
        # Sessions still running finish on their own (each wait is bounded by the client
        # timeout, a CREATE by the boot deadline); a CREATE that ends now unwinds instead of
        # storing its container, since ``stopping`` is set. Wait for them, so that nothing
        # they started outlives the server.
        deadline = time.monotonic() + (self.settings.client_timeout or 5) + 1
        create_deadline = time.monotonic() + self.settings.ready_timeout + 60
        while time.monotonic() < create_deadline:
            sessions = pykka.ActorRegistry.get_by_class(SessionActor)
            creating = self.registry.pending_count().get()
            if not creating and (not sessions or time.monotonic() > deadline):
                break
            time.sleep(0.05)
        try:
            self.stop_all_containers(CONTEXT_AUTOMATIC_ACTION)
        except Exception as exc:
            errors.append(exc)
        if self.lifecycle.can("stop"):
            self.lifecycle.fire("stop")
        self._stopping = False
        self._stopped.set()
        return errors

    def close(self) -> None:
        """Release everything; the engine cannot be started again."""
        if self.lifecycle.can("destroy"):
            self.lifecycle.fire("destroy")
        self.registry.actor_ref.stop()
        if self._hypervisor is not None:
            self._hypervisor.close()
            self._hypervisor = None
        self.journal.close()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def stop_all_containers(self, context: int) -> None:
        from anweddol_actors.engine.requests import teardown

        for container_uuid in self.registry.uuids().get():
            entry = self.registry.pop(container_uuid).get()
            if entry is not None:
                teardown(self, entry, context)

    # -- reaper and reconciliation --------------------------------------------------

    def _start_reaper(self) -> None:
        from anweddol_actors.engine.reaper import Reaper

        self._reaper = Reaper(self)
        self._reaper.start()
        if self._hypervisor is not None:
            self._reaper.watch(self._hypervisor)

    def _stop_reaper(self) -> None:
        if self._reaper is not None:
            self._reaper.stop()
            self._reaper = None

    def reconcile(self) -> None:
        """Make the journal and libvirt agree after a crash or an unclean stop.

        Containers the journal still thinks alive are adopted (``on_start_live_containers:
        adopt``: their forwarder relays again on the same port and their credentials keep
        working) when their domain still runs and they were serving, else destroyed with
        their credentials. Domains carrying our marker that no live entity claims are
        destroyed. Sessions, shells and forwarders of the earlier run are retired.
        """
        live = self.journal.live_entities()
        containers = [row for row in live if row["kind"] == "container"]
        try:
            hypervisor = self.hypervisor if containers or self._libvirt_reachable() else None
        except Exception as exc:
            log.warning("libvirt unreachable, reconciliation skipped: %s", exc)
            hypervisor = None
        adopted: set[str] = set()
        for row in containers:
            if hypervisor is None:
                continue
            if self.settings.on_start_live_containers == "adopt" and self._adopt(row):
                adopted.add(row["entity_id"])
                continue
            hypervisor.destroy_domain(row["entity_id"])
            self.journal.delete_credentials(row["entity_id"])
            self._retire(row)
        for row in live:
            if row["kind"] == "container":
                continue
            owner = row["entity_id"].split(".", 1)[0]
            if row["kind"] == "forwarder" and owner in adopted:
                continue
            self._retire(row)
        if hypervisor is not None:
            for domain_uuid in hypervisor.list_marked(owner=self.owner):
                if domain_uuid not in adopted:
                    log.warning("destroying orphaned domain %s", domain_uuid)
                    hypervisor.destroy_domain(domain_uuid)

    def _adopt(self, row: dict) -> bool:
        """Take over a container a previous run left serving; False when it cannot be."""
        from anweddol_actors.actors.registry import LiveContainer
        from anweddol_actors.core.port_forwarding import ForwarderInstance
        from anweddol_actors.core.virtualization import ContainerInstance

        container_uuid, data = row["entity_id"], row["data"]
        forwarder_row = self.journal.entity(f"{container_uuid}.forwarder", kind="forwarder")
        if (
            row["state"] != "started_serving"
            or forwarder_row is None
            or forwarder_row["state"] != "started"
            or not self.hypervisor.is_active(container_uuid)
        ):
            return False
        port = forwarder_row["data"]["port"]
        target = tuple(forwarder_row["data"]["target"])
        container = ContainerInstance(
            data.get("iso_path", self.settings.iso_path),
            container_uuid,
            data.get("memory_mib", self.settings.container_memory),
            data.get("vcpus", self.settings.container_vcpus),
            self.settings.nat_interface_name,
            journal=self.journal,
            hypervisor=self.hypervisor,
            network_mode=data.get("network", self.settings.network_mode),
            domain_type=self.settings.domain_type,
            owner=self.owner,
            lifecycle=Lifecycle(
                "container", container_uuid, self.journal, data, state=row["state"]
            ),
        )
        forwarder = ForwarderInstance(
            None,
            target[0],
            container_uuid,
            target[1],
            journal=self.journal,
            port_range=(port, port),
            bind_address=self.settings.forward_bind_address,
            lifecycle=Lifecycle(
                "forwarder",
                forwarder_row["entity_id"],
                self.journal,
                forwarder_row["data"],
                state="started",
            ),
        )
        try:
            forwarder.actor.resume_forwarding().get()
        except Exception as exc:
            log.warning("cannot adopt container %s: %s", container_uuid, exc)
            forwarder.stop_actor()
            container.stop_actor()  # its on_stop destroys the domain, journalled
            self.journal.delete_credentials(container_uuid)
            retired = self.journal.entity(f"{container_uuid}.forwarder", kind="forwarder")
            if retired is not None and retired["state"] != "destroyed":
                self._retire(retired)
            return True  # handled: nothing left to destroy
        self.registry.reserve_slot().get()
        self.registry.add(
            LiveContainer(
                uuid=container_uuid,
                container=container.actor,
                forwarder=forwarder.actor,
                container_instance=container,
                forwarder_instance=forwarder,
            )
        ).get()
        log.info("adopted container %s (port %s)", container_uuid, port)
        return True

    def _libvirt_reachable(self) -> bool:
        """Whether libvirt answers (opening the connection): orphans may exist without
        any live entity, e.g. a crash between creating a domain and journalling it."""
        try:
            self.hypervisor  # noqa: B018 - opens the connection
        except Exception as exc:
            log.warning("libvirt unreachable, orphan check skipped: %s", exc)
            return False
        return True

    def _retire(self, row: dict) -> None:
        """Move a stale entity of an earlier run to ``destroyed``, journalled."""
        lifecycle = Lifecycle(row["kind"], row["entity_id"], self.journal, state=row["state"])
        details = {"reason": "reconciled at server start"}
        for trigger in ("fail", "destroy"):
            if lifecycle.can(trigger):
                lifecycle.fire(trigger, context=CONTEXT_AUTOMATIC_ACTION, details=details)
