"""What the admin commands do to the running engine: describe it, list the live
containers (its own, and those of the other front ends of its journal), end one, list its
hypervisor hosts, drain or enable one, list the front ends sharing its journal; and what
the operator's page (``web/ui.py``) reads: the counters and each live container's journal
history.

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
from anweddol_actors.engine.frontends import destroy_elsewhere, owner_of_container
from anweddol_actors.engine.hosts import UnknownHost
from anweddol_actors.engine.reaper import limits_left
from anweddol_actors.engine.verbs import HYPERVISOR_UNREACHABLE, end_live
from anweddol_actors.errors import AnweddolError
from anweddol_actors.lifecycle.events import CONTEXT_DEFERRED_CALL
from anweddol_actors.metrics import census
from anweddol_actors.protocol.crypto import fingerprint

# What the journal records as the reason of a container ended by ``containers destroy``.
DESTROYED_BY_ADMIN = "asked by the administrator"

# The most one answer of an actor is waited for (the registry answers at once; a container
# busy with a slow libvirt call is left out of a listing rather than stalling it).
ASK_TIMEOUT = 5.0

# What an operator's view may show of a journalled transition, and of its details. Allow
# lists, not deny lists: a field or detail added later (a secret, say) stays out until it
# is named here.
HISTORY_FIELDS = ("id", "time", "kind", "trigger", "source", "dest", "context")
DETAIL_FIELDS = ("reason", "error", "expired", "verb", "username")
# A detail longer than this is cut (a reason holds one line, but a page is no log file).
DETAIL_MAX = 300


class AdminRefused(AnweddolError):
    """An admin request the engine cannot carry out; its message is one line."""


def status(context: EngineContext, listen_address: tuple) -> dict[str, Any]:
    """The running server in a few fields (``status`` reads them by these names)."""
    available = context.available_containers(ASK_TIMEOUT)
    pool = context.pool
    host, port = listen_address[:2]
    return {
        "version": __version__,
        "pid": os.getpid(),
        "uptime": context.uptime(),
        "containers": context.registry.count().get(timeout=ASK_TIMEOUT),
        "available": "nolimit" if available is None else available,
        "listen": f"{host or '0.0.0.0'}:{port}",
        "fingerprint": None if context.private_key is None else fingerprint(context.private_key),
        # Pooled containers are nobody's yet: counted here, never in ``containers``.
        "warm_pool": ({"size": 0, "ready": 0, "filling": 0} if pool is None else pool.status()),
        "hosts": hosts_summary(list_hosts(context)),
    }


def list_hosts(context: EngineContext) -> list[dict[str, Any]]:
    """Each hypervisor host, in configuration order: ``name``, ``libvirt_uri``,
    ``address``, ``enabled`` (False: drained), ``reachable`` (its libvirt answers now),
    ``containers`` (live ones there, those being torn down included), ``max_containers``
    and ``free_slots`` (under its own limit and the server's; None: no limit)."""
    usage = context.registry.host_usage().get(timeout=ASK_TIMEOUT)
    server_free = context.registry.total_free().get(timeout=ASK_TIMEOUT)
    rows = []
    for host in context.hosts:
        used = usage.get(host.name, {})
        free = used.get("free")
        if server_free is not None:
            free = server_free if free is None else min(free, server_free)
        rows.append(
            {
                "name": host.name,
                "libvirt_uri": host.link.uri,
                "address": host.settings.address,
                "enabled": context.journal.host_enabled(host.name),
                "reachable": host.link.reachable(),
                "containers": used.get("containers", 0),
                "max_containers": host.settings.max_containers,
                "free_slots": free,
            }
        )
    return rows


def hosts_summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    """``status``'s line on the hosts: how many, how many enabled, how many answer."""
    return {
        "total": len(rows),
        "enabled": sum(1 for row in rows if row["enabled"]),
        "reachable": sum(1 for row in rows if row["reachable"]),
    }


def set_host_enabled(context: EngineContext, name: str, enabled: bool) -> dict[str, Any]:
    """Drain a host (``enabled`` False: no new container goes there, its live ones run
    until they end) or enable it again; journalled, so it outlives a restart. Returns the
    host's row (as :func:`list_hosts`). ``AdminRefused`` for a name not configured."""
    try:
        host = context.hosts.get(name)
    except UnknownHost as exc:
        raise AdminRefused(str(exc)) from None
    context.journal.set_host_enabled(host.name, enabled)
    return next(row for row in list_hosts(context) if row["name"] == host.name)


def list_containers(context: EngineContext) -> list[dict[str, Any]]:
    """Every live container: its state, age, client, forwarder port and expiry, and the
    front end it belongs to (``front_end``: its name, None for an unnamed one).

    This server's own come first, from its registry. Age and expiry count from when the
    container became live in this run (a container adopted at start counts from its
    adoption), on the reaper's clock: the expiry is when the reaper will end it, as far as
    known now (an idle limit moves with the traffic). Then those of the other front ends
    sharing its journal (:func:`other_front_ends_containers`).
    """
    rows = []
    mine = context.journal.front_end
    for entry in context.registry.live().get(timeout=ASK_TIMEOUT):
        now, wall = time.monotonic(), time.time()
        try:
            state = entry.container.snapshot().get(timeout=ASK_TIMEOUT)["state"]
            forwarder = entry.forwarder.describe().get(timeout=ASK_TIMEOUT)
            lefts = [left for left, _reason in limits_left(context.settings, entry, now)]
        except Exception:
            continue  # ended while we were asking (no longer live), or too busy to answer
        expires_in = None if not lefts else max(0, int(min(lefts)))
        rows.append(
            {
                "uuid": entry.uuid,
                "host": entry.host,
                "state": state,
                "age": int(now - entry.created_monotonic),
                "client": entry.client_ip or forwarder.get("owner") or None,
                "port": forwarder.get("port"),
                "expires_at": None if expires_in is None else _iso(wall + expires_in),
                "expires_in": expires_in,
                "front_end": mine,
            }
        )
    listed = {row["uuid"] for row in rows}
    return rows + [row for row in other_front_ends_containers(context) if row["uuid"] not in listed]


def other_front_ends_containers(context: EngineContext) -> list[dict[str, Any]]:
    """The live containers the journal says belong to other front ends, with what their
    entity rows hold (host, state, client, port); their age and expiry are their owners'
    reapers' to know: None. Only those handed to a client (journalled ``serve``): a
    pooled one is nobody's yet, and a CREATE in flight is not listed by its owner either.
    """
    journal = context.journal
    mine = journal.front_end or ""
    containers = [
        row
        for row in journal.live_entities(kind="container", owner=None)
        if row.get("owner", "") != mine and "listen_port" in (row.get("data") or {})
    ]
    if not containers:
        return []
    # The client's address is the forwarder's (engine/entities.py names it after the
    # container).
    clients = {
        row["entity_id"]: (row.get("data") or {}).get("owner")
        for row in journal.live_entities(kind="forwarder", owner=None)
    }
    rows = []
    for row in containers:
        data = row.get("data") or {}
        rows.append(
            {
                "uuid": row["entity_id"],
                "host": data.get("host"),
                "state": row["state"],
                "age": None,
                "client": clients.get(f"{row['entity_id']}.forwarder") or None,
                "port": data.get("listen_port"),
                "expires_at": None,
                "expires_in": None,
                "front_end": row.get("owner") or None,
            }
        )
    return rows


def list_front_ends(context: EngineContext) -> list[dict[str, Any]]:
    """The front ends registered in the journal (``name``, ``address``, ``lease_until``,
    ``taken_by``, ``expired``), each with ``self``: whether it is this server. Empty on a
    server without a front-end name (``server.front_end``): it shares its journal with
    nobody."""
    journal = context.journal
    if journal.front_end is None:
        return []
    return [{**row, "self": row["name"] == journal.front_end} for row in journal.front_ends()]


def destroy_container(context: EngineContext, container_uuid: str) -> None:
    """End a live container as a client's DESTROY would (its token revoked first, the
    forwarder and the domain stopped with their events, the slot freed), in
    ``CONTEXT_DEFERRED_CALL``. Raises ``AdminRefused`` when it is not live, when libvirt
    does not answer (nothing is touched then), or when its teardown met errors."""
    if context.registry.get(container_uuid).get(timeout=ASK_TIMEOUT) is None:
        elsewhere = owner_of_container(context, container_uuid)
        if elsewhere is not None:
            _destroy_elsewhere(context, elsewhere)
            return
        raise AdminRefused(f"no live container {container_uuid}")
    entry = context.registry.get(container_uuid).get(timeout=ASK_TIMEOUT)
    if entry is not None and not context.hypervisor_ready(entry.host):
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


def _destroy_elsewhere(context: EngineContext, row: dict[str, Any]) -> None:
    """End a live container of another front end of the journal: its token revoked here
    (the credentials are shared), then its owner told to end it the ordinary way (see
    engine/frontends.py), its domain destroyed from here if the owner does not."""
    host = context.hosts.name_in(row["data"])
    if not context.hypervisor_ready(host):
        raise AdminRefused(f"{HYPERVISOR_UNREACHABLE}: nothing was done, try again")
    context.journal.delete_credentials(row["entity_id"])
    destroy_elsewhere(context, row, by_administrator=True)


def container_history(context: EngineContext, container_uuid: str) -> list[dict[str, Any]]:
    """The journalled transitions of a container and of its endpoint shell and forwarder,
    oldest first, each reduced to :data:`HISTORY_FIELDS` and its details to
    :data:`DETAIL_FIELDS`."""
    rows: list[dict[str, Any]] = []
    # The ids engine/entities.py gives a container's parts.
    for entity_id in (container_uuid, f"{container_uuid}.shell", f"{container_uuid}.forwarder"):
        rows.extend(context.journal.history(entity_id))
    rows.sort(key=lambda row: row["id"])
    return [_shown_transition(row) for row in rows]


def containers_by_state(context: EngineContext) -> dict[str, int]:
    """How many containers the journal holds alive, by machine state (those being created
    and those whose teardown is not done included): what ``list_containers`` leaves out.
    The states with none are left out (the metrics show them as zeros)."""
    counts = census.containers_by_state(context.journal)
    return {state: count for state, count in sorted(counts.items()) if count}


def _shown_transition(row: dict[str, Any]) -> dict[str, Any]:
    shown = {name: row.get(name) for name in HISTORY_FIELDS}
    details = row.get("details") if isinstance(row.get("details"), dict) else {}
    shown["details"] = {
        name: _shown_value(details[name]) for name in DETAIL_FIELDS if name in details
    }
    return shown


def _shown_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    text = one_line(value) if isinstance(value, BaseException) else str(value)
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 1] + "…"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
