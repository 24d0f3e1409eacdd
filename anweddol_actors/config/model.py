"""The loaded configuration: one frozen dataclass per section of the YAML file.

Field names are the file's keys, so ``config.container.container_memory`` reads like the
file. Defaults are not repeated here: they live once, in ``schema.py``, and a
``ServerConfig`` is only ever built from a validated document (``load_config``).
Lists of the file are tuples here so that the objects stay hashable and immutable.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "AccessTokenConfig",
    "ContainerConfig",
    "FrontEndConfig",
    "HypervisorConfig",
    "IpFilterConfig",
    "LogRotationConfig",
    "PortForwardingConfig",
    "ServerConfig",
    "ServerSectionConfig",
    "WebServerConfig",
]


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return value


class _Section:
    def to_dict(self) -> dict[str, Any]:
        """Plain dict of YAML-friendly values (lists, not tuples); loads back unchanged."""
        return _plain(self)


@dataclass(frozen=True)
class ContainerConfig(_Section):
    container_iso_file_path: str | None
    max_allowed_running_container_domains: int | None
    container_memory: int
    container_vcpus: int
    libvirt_uri: str
    domain_type: str
    network_mode: str
    nat_interface_name: str
    wait_max_tryout: int
    ready_timeout: float
    endpoint_username: str
    endpoint_password: str
    endpoint_listen_port: int
    client_password_length: int
    max_lifetime: float | None
    max_idle_time: float | None
    warm_pool_size: int
    host_lost_grace: float | None


@dataclass(frozen=True)
class FrontEndConfig(_Section):
    """``server.front_end``: this server's name among the front ends of one PostgreSQL
    journal, and the seconds its lease lasts (renewed every third of it)."""

    name: str
    lease: float


@dataclass(frozen=True)
class ServerSectionConfig(_Section):
    public_rsa_key_file_path: str
    private_rsa_key_file_path: str
    log_file_path: str | None
    pid_file_path: str | None
    user: str | None
    bind_address: str
    listen_port: int
    timeout: float | None
    enable_onetime_rsa_keys: bool
    database: str
    max_message_size: int
    on_start_live_containers: str
    request_deadline: float
    max_connections: int
    max_connections_per_address: int
    log_format: str
    admin_socket_path: str
    # None: the only front end of its journal.
    front_end: FrontEndConfig | None


@dataclass(frozen=True)
class WebServerConfig(_Section):
    enabled: bool
    bind_address: str | None
    listen_port: int | None
    enable_ssl: bool
    ssl_pem_private_key_file_path: str | None
    ssl_pem_certificate_file_path: str | None
    enable_metrics: bool
    enable_ui: bool
    admin_allowed_ip_list: tuple[str, ...]
    log_file_path: str | None
    pid_file_path: str | None
    user: str | None

    @property
    def port(self) -> int:
        """The port to listen on: ``listen_port``, else the original's default for the
        scheme (8080 for HTTP, 4443 for HTTPS)."""
        if self.listen_port is not None:
            return self.listen_port
        return 4443 if self.enable_ssl else 8080


@dataclass(frozen=True)
class PortForwardingConfig(_Section):
    port_range: tuple[int, int]
    bind_address: str
    max_connections: int
    max_connections_per_address: int

    @property
    def port_count(self) -> int:
        """How many ports the inclusive range holds."""
        return self.port_range[1] - self.port_range[0] + 1


@dataclass(frozen=True)
class LogRotationConfig(_Section):
    enabled: bool
    log_archive_folder_path: str | None
    max_log_lines_amount: int
    action: str


@dataclass(frozen=True)
class IpFilterConfig(_Section):
    enabled: bool
    denied_ip_list: tuple[str, ...]
    allowed_ip_list: tuple[str, ...]


@dataclass(frozen=True)
class AccessTokenConfig(_Section):
    enabled: bool
    access_token_database_file_path: str


@dataclass(frozen=True)
class HypervisorConfig(_Section):
    """One entry of the ``hypervisors:`` list: a libvirt host containers are placed on.

    ``domain_type`` / ``container_iso_file_path``: None for the container section's.
    """

    name: str
    libvirt_uri: str
    address: str
    max_containers: int | None
    domain_type: str | None
    container_iso_file_path: str | None


@dataclass(frozen=True)
class ServerConfig(_Section):
    container: ContainerConfig
    server: ServerSectionConfig
    port_forwarding: PortForwardingConfig
    ip_filter: IpFilterConfig
    access_token: AccessTokenConfig
    log_rotation: LogRotationConfig
    web_server: WebServerConfig
    # Empty: one host, from container.libvirt_uri (the server before the list existed).
    hypervisors: tuple[HypervisorConfig, ...]


# Section name in the file -> its dataclass, in the order of ServerConfig's fields.
SECTION_TYPES: dict[str, type[_Section]] = {
    "container": ContainerConfig,
    "server": ServerSectionConfig,
    "port_forwarding": PortForwardingConfig,
    "ip_filter": IpFilterConfig,
    "access_token": AccessTokenConfig,
    "log_rotation": LogRotationConfig,
    "web_server": WebServerConfig,
}
