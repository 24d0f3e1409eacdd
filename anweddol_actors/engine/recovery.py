"""Making the journal and libvirt agree: at start (after a crash or an unclean stop), and
after every libvirt outage.

At start, containers the journal still thinks alive are adopted (``on_start_live_containers:
adopt``: their forwarder relays again on the same port and their credentials keep
working) when their domain still runs, they were serving (their client got its CREATE
response) and their credentials are still stored (no DESTROY had begun), else destroyed
with their credentials. A warm pool's container (``started_pooled``) never served anyone:
it is destroyed like any container no client held, its shell and forwarder retired.
Domains carrying our marker that no live entity claims are destroyed.
Sessions, shells and forwarders of the earlier run are retired.

When libvirt does not answer at start, the server starts anyway and serves STAT; this
reconciliation waits and runs once libvirt answers (the reaper runs it at the connection),
and until then every CREATE and DESTROY answers ``Unavailable (hypervisor unreachable)``.
We chose serving over waiting: the server stays observable (STAT, its log) during a long
libvirt outage, clients get an answer that says why instead of a refused connection, and
SIGTERM ends it through the ordinary stop, with no start-up wait to cut short.

After an outage (libvirt reconnected), :func:`after_outage` destroys the marked domains no
live entity claims; the reaper's tick that follows tears down the containers whose domain
vanished meanwhile and retries the teardowns the outage interrupted.

All of this runs per hypervisor host, on that host's link: a host's reconciliation takes
the earlier run's containers whose journalled data names it (``"host"``; a container
journalled before hosts existed is the first host's), their shells and forwarders, and
the first host takes the rest (sessions). A host that does not answer at start is
reconciled at its connection; the others serve meanwhile.
"""

from __future__ import annotations

import logging

from anweddol_actors.actors.base import one_line
from anweddol_actors.actors.registry import LiveContainer
from anweddol_actors.engine.context import EngineContext
from anweddol_actors.engine.entities import start_container, start_forwarder, stop_actor
from anweddol_actors.hypervisor import HypervisorUnavailable
from anweddol_actors.lifecycle import Lifecycle
from anweddol_actors.lifecycle.events import CONTEXT_AUTOMATIC_ACTION

log = logging.getLogger(__name__)


def begin(context: EngineContext) -> None:
    """At server start: note what the earlier run left alive in the journal, and reconcile
    it now on each host that answers, else later (:func:`recover`, at its connection)."""
    context.recovered.clear()
    for host in context.hosts:
        host.recovered.clear()
    context.earlier_run = {row["entity_id"] for row in context.journal.live_entities()}
    if not recover(context):
        for host in context.hosts:
            if not host.recovered.is_set():
                log.warning(
                    "libvirt of host %s (%s) unreachable: no container goes there, and "
                    "CREATE and DESTROY answer Unavailable when no host answers, until it "
                    "does; its reconciliation runs then",
                    host.name,
                    host.link.uri,
                )


def recover(context: EngineContext, host: str | None = None) -> bool:
    """The start's reconciliation, once per host (``host``: that one only, else every
    host): True when done (now or before) on every host asked, False when one is
    unreachable (or was lost meanwhile: what was done stays done, the rest is done at its
    next connection)."""
    names = context.hosts.names() if host is None else [host]
    done = True
    for name in names:
        done = _recover_host(context, name) and done
    if all(each.recovered.is_set() for each in context.hosts):
        context.recovered.set()
    return done


def _recover_host(context: EngineContext, name: str) -> bool:
    host = context.hosts.get(name)
    if host.recovered.is_set():
        return True
    if not host.link.reachable():
        return False
    # Re-read: a first try cut short by an outage already ended some of them.
    rows = [
        row for row in context.journal.live_entities() if row["entity_id"] in context.earlier_run
    ]
    try:
        reconcile(context, _rows_of(context, rows, name), name)
    except HypervisorUnavailable as exc:
        log.warning(
            "host %s: reconciliation interrupted, resumed at reconnection: %s",
            name,
            one_line(exc),
        )
        return False
    host.recovered.set()
    if context.started_at is not None:  # serving already: the start could not do it
        log.warning("host %s answers: reconciliation done, containers go there again", name)
    return True


def _rows_of(context: EngineContext, rows: list[dict], host: str) -> list[dict]:
    """The rows a host's reconciliation takes: its containers and their parts; the first
    host also takes what belongs to no container (sessions, the earlier server)."""
    container_hosts = {
        row["entity_id"]: context.hosts.name_in(row["data"])
        for row in rows
        if row["kind"] == "container"
    }
    first = context.hosts.first.name
    return [
        row for row in rows if container_hosts.get(row["entity_id"].split(".", 1)[0], first) == host
    ]


def reconcile(context: EngineContext, live: list[dict], host: str | None = None) -> None:
    """Reconcile the earlier run's ``live`` journal rows with the libvirt of ``host``
    (None: the first host), reachable."""
    journal = context.journal
    host = context.hosts.get(host).name
    containers = [row for row in live if row["kind"] == "container"]
    hypervisor = context.hosts.get(host).link.get()
    adopted: set[str] = set()
    for row in containers:
        if context.settings.on_start_live_containers == "adopt" and _adopt(context, row, host):
            adopted.add(row["entity_id"])
            continue
        hypervisor.destroy_domain(row["entity_id"])
        journal.delete_credentials(row["entity_id"])
        retire(context, row)
    for row in live:
        if row["kind"] == "container":
            continue
        owner = row["entity_id"].split(".", 1)[0]
        if row["kind"] == "forwarder" and owner in adopted:
            continue
        retire(context, row)
    # Read after the above: a container live on another host (two entries of the list
    # naming one libvirt) or made meanwhile on another host is claimed, never an orphan.
    claimed = {row["entity_id"] for row in journal.live_entities(kind="container")}
    for domain_uuid in hypervisor.list_marked(owner=context.owner):
        if domain_uuid not in adopted and domain_uuid not in claimed:
            log.warning("host %s: destroying orphaned domain %s", host, domain_uuid)
            hypervisor.destroy_domain(domain_uuid)


def after_outage(context: EngineContext, host: str | None = None) -> list[str]:
    """Destroy the marked domains of ours on ``host`` (None: the first) that no live
    container entity claims (made by a createXML whose answer the outage lost, or left by
    a teardown it cut); their UUIDs.

    Domains are listed before the journal is read: a CREATE journals its container before
    asking libvirt for its domain, so a domain being made meanwhile is always claimed.
    """
    hypervisor = context.hosts.get(host).link.get()
    marked = hypervisor.list_marked(owner=context.owner)
    claimed = {row["entity_id"] for row in context.journal.live_entities(kind="container")}
    destroyed = []
    for domain_uuid in marked:
        if domain_uuid not in claimed:
            log.warning("destroying domain %s: no live container claims it", domain_uuid)
            hypervisor.destroy_domain(domain_uuid)
            destroyed.append(domain_uuid)
    return destroyed


def _adopt(context: EngineContext, row: dict, host: str) -> bool:
    """Take over a container a previous run left serving; False when it cannot be."""
    journal = context.journal
    container_uuid, data = row["entity_id"], row["data"]
    forwarder_row = journal.entity(f"{container_uuid}.forwarder", kind="forwarder")
    if (
        row["state"] != "started_serving"
        or forwarder_row is None
        or forwarder_row["state"] != "started"
        # A DESTROY had begun (its first step forgets the token): nobody holds it any more.
        or not journal.has_credentials(container_uuid)
        or not context.hosts.get(host).link.get().is_active(container_uuid)
    ):
        return False
    port = forwarder_row["data"]["port"]
    target = tuple(forwarder_row["data"]["target"])
    settings = context.settings
    container = start_container(
        context,
        container_uuid,
        Lifecycle("container", container_uuid, journal, data, state=row["state"]),
        host=host,
        iso_path=data.get("iso_path", settings.iso_path),
        memory_mib=data.get("memory_mib", settings.container_memory),
        vcpus=data.get("vcpus", settings.container_vcpus),
        network_mode=data.get("network", settings.network_mode),
    )
    forwarder = start_forwarder(
        context,
        container_uuid,
        target,
        port_range=(port, port),
        lifecycle=Lifecycle(
            "forwarder", forwarder_row["entity_id"], journal, forwarder_row["data"], state="started"
        ),
    )
    try:
        forwarder.resume_forwarding().get()
    except Exception as exc:
        log.warning("cannot adopt container %s: %s", container_uuid, one_line(exc))
        stop_actor(forwarder)  # failed by itself (governed): journalled, port released
        container.stop_domain(CONTEXT_AUTOMATIC_ACTION, "adoption failed").get()
        stop_actor(container)
        journal.delete_credentials(container_uuid)
        return True  # handled: nothing left to destroy
    context.registry.reserve_slot(host).get()
    context.registry.add(
        LiveContainer(uuid=container_uuid, container=container, forwarder=forwarder, host=host)
    ).get()
    log.info("adopted container %s (port %s)", container_uuid, port)
    return True


def retire(context: EngineContext, row: dict, details: dict | None = None) -> None:
    """Move a stale entity (of an earlier run, or of a front end taken over) to
    ``destroyed``, journalled with ``details`` (the why)."""
    lifecycle = Lifecycle(row["kind"], row["entity_id"], context.journal, state=row["state"])
    details = details or {"reason": "reconciled at server start"}
    for trigger in ("fail", "destroy"):
        if lifecycle.can(trigger):
            lifecycle.fire(trigger, context=CONTEXT_AUTOMATIC_ACTION, details=details)
