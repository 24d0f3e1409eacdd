"""Making entity actors: the one place a container, shell or forwarder actor is started.

Every actor made here reports its own failure to the supervisor (``on_entity_failed``),
which is how an exception inside any entity ends it through its machine and tells the
server, which keeps serving.
"""

from __future__ import annotations

import uuid as uuid_module
from typing import Any

from anweddol_actors.actors.base import FailureListener
from anweddol_actors.actors.container import ContainerActor, ContainerSettings
from anweddol_actors.actors.endpoint_shell import EndpointShellActor
from anweddol_actors.actors.forwarder import ForwarderActor
from anweddol_actors.engine.context import EngineContext
from anweddol_actors.hypervisor import Hypervisor
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle


def _failure_listener(context: EngineContext):
    def tell(entity_id: str, kind: str, transition, exc: BaseException) -> None:
        listener = context.on_entity_failed
        if listener is not None:
            listener(entity_id, kind, transition, exc)

    return tell


def container_settings(context: EngineContext, **overrides: Any) -> ContainerSettings:
    settings = context.settings
    values = {
        "iso_path": settings.iso_path,
        "memory_mib": settings.container_memory,
        "vcpus": settings.container_vcpus,
        "domain_type": settings.domain_type,
        "network_mode": settings.network_mode,
        "nat_interface_name": settings.nat_interface_name,
        "guest_port_range": settings.guest_port_range,
        "owner": context.owner,
    }
    values.update(overrides)
    return ContainerSettings(**values)


def start_container(
    context: EngineContext,
    container_uuid: str | None = None,
    lifecycle: Lifecycle | None = None,
    host: str | None = None,
    **overrides: Any,
) -> Any:
    """A new container actor (its proxy) on ``host`` (None: the first host);
    ``lifecycle``: a resumed one, to adopt. The host gives its libvirt link, the address
    its guest ports are forwarded on, its ISO and its domain type (``overrides`` win)."""
    chosen = context.hosts.get(host)
    on_host = {
        "host": chosen.name,
        "forward_address": chosen.settings.address,
        "iso_path": chosen.iso_path(context.settings),
        "domain_type": chosen.link.domain_type,
    }
    return start_container_with(
        context.journal,
        chosen.link.get(),
        container_settings(context, **{**on_host, **overrides}),
        container_uuid,
        lifecycle,
        _failure_listener(context),
    )


def start_container_with(
    journal: Journal,
    hypervisor: Hypervisor,
    settings: ContainerSettings,
    container_uuid: str | None = None,
    lifecycle: Lifecycle | None = None,
    on_failed: FailureListener | None = None,
) -> Any:
    """A container actor from its parts: the server's, or a seed user's standalone
    ``ContainerInstance`` (its own journal and hypervisor)."""
    if settings.domain_type == "auto":
        settings.domain_type = hypervisor.detect_domain_type()
    return ContainerActor.start(
        container_uuid or str(uuid_module.uuid4()),
        journal,
        hypervisor,
        settings,
        lifecycle,
        on_failed,
    ).proxy()


def start_shell(context: EngineContext, container_uuid: str, host: str | None, port: int) -> Any:
    settings = context.settings
    return start_shell_with(
        context.journal,
        f"{container_uuid}.shell",
        host,
        port,
        settings.endpoint_username,
        settings.endpoint_password,
        settings.shell_timeout,
        _failure_listener(context),
    )


def start_shell_with(
    journal: Journal,
    shell_id: str,
    host: str | None,
    port: int,
    username: str,
    password: str,
    timeout: float,
    on_failed: FailureListener | None = None,
) -> Any:
    return EndpointShellActor.start(
        shell_id, journal, host, port, username, password, timeout, on_failed
    ).proxy()


def start_forwarder(
    context: EngineContext,
    container_uuid: str,
    target: tuple[str, int],
    port_range: tuple[int, int] | None = None,
    lifecycle: Lifecycle | None = None,
    owner: str | None = None,
) -> Any:
    """``owner``: the address that made the CREATE (None when adopting: the journalled one)."""
    settings = context.settings
    return start_forwarder_with(
        context.journal,
        f"{container_uuid}.forwarder",
        port_range or settings.port_range,
        settings.forward_bind_address,
        target,
        lifecycle,
        _failure_listener(context),
        max_connections=settings.forward_max_connections,
        max_connections_per_address=settings.forward_max_connections_per_address,
        owner=owner,
        relays=context.metrics.forwarders,
    )


def start_forwarder_with(
    journal: Journal,
    forwarder_id: str,
    port_range: tuple[int, int],
    bind_address: str,
    target: tuple[str, int],
    lifecycle: Lifecycle | None = None,
    on_failed: FailureListener | None = None,
    **limits: Any,
) -> Any:
    """``limits``: the forwarder's ``max_connections``, ``max_connections_per_address``
    and ``owner`` (none: no limit, as for a seed user's standalone forwarder)."""
    return ForwarderActor.start(
        forwarder_id, journal, port_range, bind_address, target, lifecycle, on_failed, **limits
    ).proxy()


def stop_actor(proxy: Any) -> None:
    """Stop an entity actor (its on_stop releases what it still holds); idempotent."""
    if proxy is not None:
        proxy.actor_ref.stop()
