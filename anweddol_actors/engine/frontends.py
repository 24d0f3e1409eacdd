"""Several front ends on one PostgreSQL journal: this front end among the others.

A front end is one ``serve`` process with a name (``server.front_end``). The front ends
of one journal share its tables: the tokens, the credentials, the hosts' drain states and
their capacity, and every container's entity, whose ``owner`` is the front end that
created it (its forwarder, its actors and its public port live there). Each front end
reconciles, reaps and lists as its own only what it owns (the journal scopes
``live_entities`` to its owner) and marks its libvirt domains with its own server id, so
two front ends on one host never take each other's domains for orphans.

What crosses front ends, and how:

- **Capacity**: each front end writes how many slots it holds per host, and a CREATE's
  claim is checked against the others' in one journal transaction
  (:class:`JournalCapacity`, used by the registry).
- **A DESTROY at another front end**: the token is checked and revoked in the shared
  credentials; the front end that got the DESTROY tells the owner (PostgreSQL NOTIFY on
  the owner's channel), which ends its container the ordinary way (forwarder stopped,
  domain destroyed, each journalled, events fired on the owner), and answers the client
  once the journal shows it ended; an owner that does not end it in time (gone, or the
  notification lost) has the domain destroyed from here, and its libvirt stop event, or
  its lease running out, does the rest.
- **A lease**: each front end renews its row in ``front_ends`` every third of
  ``server.front_end.lease``. A front end whose lease ran out is taken over by exactly one
  other (an atomic claim in the journal): its live containers' domains are destroyed
  (their forwarders died with it: nobody can reach them), their credentials revoked and
  their entities journalled ``destroyed`` with the reason. A front end that finds its own
  lease taken over (it was paused past its lease) says so, registers again, and its
  reaper ends what it still holds as the domains vanish.

The clocks of the front ends must agree to well under a lease (NTP).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from anweddol_actors.actors.base import one_line
from anweddol_actors.engine.context import EngineContext
from anweddol_actors.engine.recovery import retire
from anweddol_actors.errors import AnweddolError
from anweddol_actors.journal import Journal
from anweddol_actors.journal.notify import Listener, channel_of
from anweddol_actors.lifecycle import SPECS

log = logging.getLogger(__name__)

# A notification to the owner of a container: "destroy UUID BY VIA", VIA saying whether a
# client's DESTROY or an administrator's ``containers destroy`` reached front end BY.
_DESTROY = "destroy"
_CLIENT, _ADMIN = "client", "admin"
# How long a DESTROY of another front end's container waits for that front end to end it
# before destroying the domain itself: a live owner ends a container in well under a
# second (its forwarder, then its domain).
OWNER_GRACE = 10.0


class JournalCapacity:
    """The registry's shared capacity (actors/registry.py ``SharedCapacity``), kept in
    the journal's ``capacity`` table under this front end's name."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def claim(self, host: str, used_after: int, limit: int | None) -> bool:
        return self.journal.claim_capacity(host, used_after, limit)

    def report(self, host: str, used: int) -> None:
        self.journal.report_capacity(host, used)


def owner_of_container(context: EngineContext, container_uuid: str) -> dict | None:
    """The journal row of a live container another front end owns (None: not live, or
    ours, or no other front end can exist)."""
    if context.settings.front_end is None:
        return None
    row = context.journal.entity(container_uuid, kind="container")
    if (
        row is None
        or row["state"] in SPECS["container"].terminal
        or row["owner"] == context.settings.front_end
    ):
        return None
    return row


def destroy_elsewhere(context: EngineContext, row: dict, by_administrator: bool = False) -> None:
    """A DESTROY (its credentials already revoked) of a container another front end
    owns: tell the owner and give it a bounded time to end the container the ordinary
    way; else destroy the domain from here.

    The owner's own teardown is the one wanted: its journal rows say why, its events
    fire where the container's handlers are, and its forwarder stops. Destroying the
    domain from here after ``OWNER_GRACE`` ends the container when the owner is gone or
    the notification was lost (the owner's libvirt stop event, or its lease running out,
    does the rest there). Neither failure is the client's: each is logged.
    """
    container_uuid, owner = row["entity_id"], row["owner"]
    me = context.settings.front_end
    try:
        via = _ADMIN if by_administrator else _CLIENT
        context.journal.notify(channel_of(owner), f"{_DESTROY} {container_uuid} {me} {via}")
    except AnweddolError as exc:
        log.warning("container %s: cannot tell front end %s: %s", container_uuid, owner, exc)
    else:
        deadline = time.monotonic() + OWNER_GRACE
        pause = 0.01  # a live owner ends it in tens of ms: look soon, then less often
        while time.monotonic() < deadline:
            time.sleep(pause)
            try:
                ended = owner_of_container(context, container_uuid) is None
            except AnweddolError as exc:  # the journal cannot say: end it from here
                log.warning("container %s: its end not read: %s", container_uuid, exc)
                break
            if ended:
                log.info("container %s: ended by its front end %s", container_uuid, owner)
                return
            pause = min(pause * 2, 0.1)
    host = context.hosts.get(context.hosts.name_in(row["data"]))
    try:
        host.link.get().destroy_domain(container_uuid)
    except AnweddolError as exc:
        log.warning(
            "container %s of front end %s: domain not destroyed from here: %s",
            container_uuid,
            owner,
            one_line(exc),
        )
        return
    log.warning(
        "container %s: front end %s did not end it in %g s: its domain destroyed from here",
        container_uuid,
        owner,
        OWNER_GRACE,
    )


class FrontEnd:
    """This front end's lease, its notification listener and its takeovers: two daemon
    threads, started once the server serves and stopped before the journal closes."""

    def __init__(
        self, context: EngineContext, address: str, reap: Callable[[str, dict], None]
    ) -> None:
        self.context = context
        self.name = context.settings.front_end
        self.lease = context.settings.front_end_lease
        self.address = address
        self._reap = reap  # ends a live container of ours on the reaper's thread
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener: Listener | None = None

    def start(self) -> None:
        journal = self.context.journal
        self._register()
        # The reconciliation ran: what this front end holds now replaces what a crash
        # left in the shared table.
        self.context.registry.report_all().get()
        self.context.registry.set_others(journal.capacity_of_others()).get()
        if journal.postgresql:
            self._listener = Listener(self.context.settings.database, [channel_of(self.name)])
        else:
            log.warning(
                "front end %s: the journal is no PostgreSQL database: no notifications; a "
                "DESTROY at another front end reaches this one through libvirt's stop event",
                self.name,
            )
        self._spawn(self._renew, "lease")
        if self._listener is not None:
            self._spawn(self._listen, "notifications")
        log.info(
            "front end %s at %s: lease of %g s, renewed every %g s",
            self.name,
            self.address,
            self.lease,
            self.lease / 3,
        )

    def _register(self) -> None:
        """Register, trying again for at most a lease: a front end restarted while another
        is still taking it over is refused until that takeover is done (a tick or two)."""
        deadline = time.monotonic() + self.lease
        while True:
            try:
                self.context.journal.register_front_end(self.address, self.lease)
                return
            except AnweddolError as exc:
                if time.monotonic() >= deadline:
                    raise
                log.warning("front end %s: %s; trying again", self.name, exc)
                time.sleep(1.0)

    def _spawn(self, target: Callable[[], None], what: str) -> None:
        thread = threading.Thread(target=target, name=f"anweddol-front-end-{what}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop renewing and listening; a clean stop leaves the journal's front ends, so
        nobody takes over what this one already ended."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        try:
            self.context.journal.unregister_front_end()
        except AnweddolError as exc:
            log.warning("front end %s: cannot leave the journal: %s", self.name, exc)

    # -- the lease ----------------------------------------------------------------------

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.tick()
            except Exception as exc:  # a bad tick must not end the renewals
                log.warning("front end %s: lease tick failed: %s", self.name, one_line(exc))

    def tick(self) -> None:
        """Renew the lease, refresh what other front ends changed, take over the dead."""
        journal = self.context.journal
        if not journal.renew_lease(self.lease):
            log.error(
                "front end %s: another front end took this one over (its lease ran out): "
                "its containers were destroyed there; registering again",
                self.name,
            )
            journal.register_front_end(self.address, self.lease)
        registry = self.context.registry
        registry.report_all().get()
        registry.set_others(journal.capacity_of_others()).get()
        journal.reload_host_states()
        for name in journal.expired_front_ends():
            if journal.take_over(name):
                self.take_over(name)

    def take_over(self, name: str) -> bool:
        """End the live entities of front end ``name``, whose lease ran out; True when
        none is left (else the next tick resumes: a host that does not answer now)."""
        journal = self.context.journal
        rows = journal.live_entities(owner=name)
        reason = f"front end {name} stopped renewing its lease"
        if rows:
            log.warning(
                "front end %s: %s; ending its %d live entities", self.name, reason, len(rows)
            )
        details = {"reason": reason, "front_end": name, "taken_over_by": self.name}
        containers = {row["entity_id"]: row for row in rows if row["kind"] == "container"}
        skipped: set[str] = set()
        for container_uuid, row in containers.items():
            host = self.context.hosts.get(self.context.hosts.name_in(row["data"]))
            try:
                host.link.get().destroy_domain(container_uuid)
            except AnweddolError as exc:
                log.warning(
                    "front end %s: container %s of %s kept for the next tick: %s",
                    self.name,
                    container_uuid,
                    name,
                    one_line(exc),
                )
                skipped.add(container_uuid)
                continue
            journal.delete_credentials(container_uuid)
            retire(self.context, row, details)
            log.warning(
                "front end %s: container %s of front end %s destroyed (%s)",
                self.name,
                container_uuid,
                name,
                reason,
            )
        for row in rows:
            if row["kind"] != "container" and row["entity_id"].split(".", 1)[0] not in skipped:
                retire(self.context, row, details)
        if skipped:
            return False
        journal.drop_capacity(name)
        # Done: its row goes, so that it registers afresh when it comes back.
        journal.unregister_front_end(name)
        log.warning("front end %s: front end %s taken over", self.name, name)
        return True

    # -- notifications ------------------------------------------------------------------

    def _listen(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stop.is_set():
            try:
                for _channel, payload in listener.wait(1.0):
                    self.told(payload)
            except Exception as exc:  # the listening must outlive one bad notification
                log.warning("front end %s: notification failed: %s", self.name, one_line(exc))
                self._stop.wait(1.0)

    def told(self, payload: str) -> None:
        """A notification from another front end."""
        words = payload.split()
        if len(words) == 4 and words[0] == _DESTROY and words[3] in (_CLIENT, _ADMIN):
            container_uuid, by, via = words[1:]
            if via == _ADMIN:
                reason = f"destroyed by an administrator at front end {by}"
            else:
                reason = f"DESTROY received by front end {by}"
            self._reap(container_uuid, {"reason": reason})
        else:
            log.warning("front end %s: notification not understood: %r", self.name, payload)
