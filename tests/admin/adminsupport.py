"""Helpers of the admin channel's tests."""

from __future__ import annotations

import uuid

from anweddol_actors.actors.registry import LiveContainer
from anweddol_actors.engine.entities import start_container, start_forwarder
from anweddol_actors.lifecycle.events import CONTEXT_NORMAL_PROCESS

# Loopback ports for the forwarders of these tests: away from the other suites' ranges.
FORWARDER_PORTS = (43000, 43099)


def serve_stand_in(engine, client_ip: str = "127.0.0.9") -> tuple[str, str]:
    """A live container as a CREATE leaves it, without booting anything: a domain of the
    test driver, a real forwarder on a loopback port, stored credentials, registered.
    Returns (uuid, client token)."""
    context = engine.context
    container_uuid = str(uuid.uuid4())
    assert context.registry.reserve_slot().get()
    container = start_container(context, container_uuid)
    container.create(CONTEXT_NORMAL_PROCESS).get()
    container.start_domain(CONTEXT_NORMAL_PROCESS).get()
    container.mark_administered("user_12345", CONTEXT_NORMAL_PROCESS).get()
    forwarder = start_forwarder(context, container_uuid, ("127.0.0.1", 9), owner=client_ip)
    forwarder.create(CONTEXT_NORMAL_PROCESS).get()
    forwarder.start_forwarding(CONTEXT_NORMAL_PROCESS).get()
    container.mark_serving(forwarder.port.get(), CONTEXT_NORMAL_PROCESS).get()
    token = "t" * 255
    context.journal.store_credentials(container_uuid, token)
    entry = LiveContainer(container_uuid, container, forwarder, client_ip=client_ip)
    assert context.registry.add(entry).get()
    return container_uuid, token
