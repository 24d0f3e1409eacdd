"""The engine's settings: built from the seed constructor's arguments or a config file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class HostSettings:
    """One hypervisor host (an entry of the configuration's ``hypervisors:`` list).

    ``address``: where this server reaches the host's forwarded guest ports (QEMU's
    user-mode forward binds there). ``domain_type`` / ``iso_path``: None for the server's
    own (``Settings.domain_type`` / ``Settings.iso_path``).
    """

    name: str
    libvirt_uri: str
    address: str = "127.0.0.1"
    max_containers: int | None = None
    domain_type: str | None = None
    iso_path: str | None = None


# The name of the single host a server without a ``hypervisors:`` list runs on.
LOCAL_HOST = "local"


@dataclass
class Settings:
    iso_path: str | None = None
    bind_address: str = ""
    listen_port: int = 6150
    client_timeout: float | None = 10
    max_message_size: int = 1 << 20
    # Seconds from accept to a complete request, whatever the client trickles meanwhile.
    request_deadline: float | None = 30
    max_connections: int | None = 512
    max_connections_per_address: int | None = 16
    libvirt_uri: str = "qemu:///system"
    # The hypervisor hosts; empty: one host, ``LOCAL_HOST``, from ``libvirt_uri`` and
    # ``max_containers`` (see ``host_list``).
    hosts: tuple[HostSettings, ...] = ()
    # Seconds a host may stay unreachable before its containers are declared ``lost``
    # (journalled, credentials revoked, capacity freed); None: never.
    host_lost_grace: float | None = 60.0
    # Several front ends on one PostgreSQL journal: this one's name (None: the only one)
    # and the seconds its lease lasts unrenewed before another takes its containers over.
    front_end: str | None = None
    front_end_lease: float = 30.0
    network_mode: str = "user"
    domain_type: str = "auto"
    nat_interface_name: str = "virbr0"
    # The seed's container defaults; the embedded configuration of `serve` sizes them for
    # the dev image (256 MiB, 1 vCPU).
    container_memory: int = 2048
    container_vcpus: int = 2
    max_containers: int | None = 6
    # Seconds; None for no limit. A container past either is destroyed by the reaper.
    max_lifetime: float | None = None
    max_idle_time: float | None = 3600
    # Containers booted and administered ahead of demand (0: none, as in the seed; the
    # configuration file's shipped default is 1).
    warm_pool_size: int = 0
    port_range: tuple[int, int] = (10000, 20000)
    forward_bind_address: str = ""
    forward_max_connections: int | None = 16
    forward_max_connections_per_address: int | None = 4
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
    # Test hooks, never on by default: the steps (see ``engine.pause``) at which the
    # engine stops and waits, so that a test can kill the process exactly there.
    pause_at: frozenset[str] = frozenset()

    def host_list(self) -> tuple[HostSettings, ...]:
        """The hosts containers are placed on: ``hosts``, or the one local host."""
        if self.hosts:
            return self.hosts
        return (
            HostSettings(
                name=LOCAL_HOST, libvirt_uri=self.libvirt_uri, max_containers=self.max_containers
            ),
        )
