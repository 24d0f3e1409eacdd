"""Placement: which host a new container goes to.

As the schedulers of Nova, OpenNebula or Incus do it, in three steps:

1. **filter** (:func:`eligible`): the host is enabled (not drained: ``hosts drain``,
   journalled), ready (reconciled, its libvirt answers), and has room under its own
   ``max_containers``; and the server as a whole has room under its cap;
2. **weigh** (:func:`ranked`): most free slots first, then most free memory (libvirt's
   ``getFreeMemory``; a host that cannot say counts as none), then configuration order;
3. **claim** (:func:`place`): the registry actor takes the slot on that host in one
   step; a claim lost to a concurrent CREATE (or fill) tries the next candidate.

No candidate: the CREATE gets the ``Unavailable`` answer of a full server.
The filter and the weighing are pure functions of :class:`HostView`, so they are tested
without a server.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from anweddol_actors.engine.context import EngineContext
from anweddol_actors.errors import AnweddolError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostView:
    """What placement knows of one host at the moment of a CREATE."""

    name: str
    enabled: bool
    ready: bool
    # Free slots under the host's own max_containers (None: no limit of its own).
    free_slots: int | None
    # Bytes of free memory, as libvirt reports it (None: unknown).
    free_memory: int | None = None


def eligible(views: list[HostView], server_free: int | None) -> list[HostView]:
    """The hosts that may take a container now (``server_free``: free slots under the
    server-wide cap, None when there is none)."""
    if server_free is not None and server_free <= 0:
        return []
    return [
        view
        for view in views
        if view.enabled and view.ready and (view.free_slots is None or view.free_slots > 0)
    ]


def ranked(views: list[HostView]) -> list[HostView]:
    """Best first: most free slots (no limit counts as endless), then most free memory;
    ties keep the configuration order."""

    def weight(view: HostView) -> tuple[float, int]:
        slots = math.inf if view.free_slots is None else view.free_slots
        return (-slots, -(view.free_memory or 0))

    return sorted(views, key=weight)


def views(context: EngineContext, memory: bool = True) -> list[HostView]:
    """Each host as placement sees it now (``memory``: ask each ready host's libvirt for
    its free memory, a bounded call that may fail and then counts as unknown)."""
    usage = context.registry.host_usage().get()
    seen = []
    for host in context.hosts:
        ready = host.ready()
        free_memory = None
        if memory and ready:
            free_memory = host.link.get().free_memory()
        seen.append(
            HostView(
                name=host.name,
                enabled=context.journal.host_enabled(host.name),
                ready=ready,
                free_slots=usage[host.name]["free"],
                free_memory=free_memory,
            )
        )
    return seen


def candidates(context: EngineContext) -> list[str]:
    """The hosts a container may go to now, best first."""
    if context.settings.front_end is not None:
        _refresh_others(context)
    server_free = context.registry.total_free().get()
    return [view.name for view in ranked(eligible(views(context), server_free))]


def _refresh_others(context: EngineContext) -> None:
    """The other front ends' slots as of now, not of the last lease tick: a host another
    front end just freed is a candidate at once (the claim itself is exact either way)."""
    try:
        context.registry.set_others(context.journal.capacity_of_others()).get()
    except AnweddolError as exc:
        log.warning("placement: the other front ends' slots not read, the last ones used: %s", exc)


def place(context: EngineContext, pooled: bool = False, only: str | None = None) -> str | None:
    """Claim a slot for one container (``pooled``: a warm pool's fill) on the best host
    (``only``: on that host or nowhere); the host's name, or None when no host has room.
    A candidate whose slot was taken meanwhile is passed over for the next."""
    registry: Any = context.registry
    for name in candidates(context):
        if only is not None and name != only:
            continue
        if registry.reserve_slot(name, pooled=pooled).get():
            return name
    return None
