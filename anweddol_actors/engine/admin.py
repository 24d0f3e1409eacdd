"""What the admin commands do to the running engine: describe it, list its live
containers, end one.

The admin channel (``anweddol_actors.admin``) only translates requests into these calls.
They run on the channel's connection thread, never inside an actor: like a session, it
asks the registry and the entity actors, and the seed events of a destroy run there, in
``CONTEXT_DEFERRED_CALL`` (the seed's "called from an external process").
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from anweddol_actors import __version__
from anweddol_actors.actors.base import one_line
from anweddol_actors.engine.context import EngineContext
from anweddol_actors.engine.reaper import limits_left
from anweddol_actors.engine.verbs import HYPERVISOR_UNREACHABLE, end_live
from anweddol_actors.errors import AnweddolError
from anweddol_actors.lifecycle.events import CONTEXT_DEFERRED_CALL
from anweddol_actors.protocol.crypto import fingerprint

# What the journal records as the reason of a container ended by ``containers destroy``.
DESTROYED_BY_ADMIN = "asked by the administrator"


class AdminRefused(AnweddolError):
    """An admin request the engine cannot carry out; its message is one line."""


def status(context: EngineContext, listen_address: tuple) -> dict[str, Any]:
    """The running server in a few fields (``status`` reads them by these names)."""
    available = context.registry.available().get()
    host, port = listen_address[:2]
    return {
        "version": __version__,
        "pid": os.getpid(),
        "uptime": context.uptime(),
        "containers": context.registry.count().get(),
        "available": "nolimit" if available is None else available,
        "listen": f"{host or '0.0.0.0'}:{port}",
        "fingerprint": None if context.private_key is None else fingerprint(context.private_key),
    }


def list_containers(context: EngineContext) -> list[dict[str, Any]]:
    """Every live container: its state, age, client, forwarder port and expiry.

    Age and expiry count from when the container became live in this run (a container
    adopted at start counts from its adoption), on the reaper's clock: the expiry is when
    the reaper will end it, as far as known now (an idle limit moves with the traffic).
    """
    rows = []
    for entry in context.registry.live().get():
        now, wall = time.monotonic(), time.time()
        try:
            state = entry.container.snapshot().get()["state"]
            forwarder = entry.forwarder.describe().get()
            lefts = [left for left, _reason in limits_left(context.settings, entry, now)]
        except Exception:
            continue  # ended while we were asking: it is no longer live
        expires_in = None if not lefts else max(0, int(min(lefts)))
        rows.append(
            {
                "uuid": entry.uuid,
                "state": state,
                "age": int(now - entry.created_monotonic),
                "client": entry.client_ip or forwarder.get("owner") or None,
                "port": forwarder.get("port"),
                "expires_at": None if expires_in is None else _iso(wall + expires_in),
                "expires_in": expires_in,
            }
        )
    return rows


def destroy_container(context: EngineContext, container_uuid: str) -> None:
    """End a live container as a client's DESTROY would (its token revoked first, the
    forwarder and the domain stopped with their events, the slot freed), in
    ``CONTEXT_DEFERRED_CALL``. Raises ``AdminRefused`` when it is not live, when libvirt
    does not answer (nothing is touched then), or when its teardown met errors."""
    if context.registry.get(container_uuid).get() is None:
        raise AdminRefused(f"no live container {container_uuid}")
    if not context.hypervisor_ready():
        raise AdminRefused(f"{HYPERVISOR_UNREACHABLE}: nothing was done, try again")
    details = {"reason": DESTROYED_BY_ADMIN}
    errors = end_live(context, container_uuid, CONTEXT_DEFERRED_CALL, details)
    if errors is None:
        raise AdminRefused(f"no live container {container_uuid}")
    if errors:
        raise AdminRefused(
            f"container {container_uuid} ended with {len(errors)} error(s) (journalled; a "
            f"domain not destroyed is retried by the reaper): {one_line(errors[0])}"
        )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
