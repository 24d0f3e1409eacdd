"""The journal: every accepted transition, the entities' current state, hashed credentials.

The journal lives in a SQLite file (or ``:memory:``) or in a PostgreSQL database
(``postgresql://USER@HOST:PORT/DBNAME``), through the same Peewee models; its schema is
created or migrated when it opens (journal/schema.py).

One connection, shared by every thread and guarded by one lock. SQLite serialises writers
anyway; a single connection also makes ``:memory:`` work across threads (each connection to
``:memory:`` is a separate, empty database). A PostgreSQL connection the server closed
(restarted, or the backend terminated) fails the call that meets it with JournalError, and
the next call opens a new one.

Transitions are the hot path (several per client request): :meth:`Journal.record_many`
writes them with fixed statements, rather than building each INSERT through Peewee's query
compiler, which cost more CPU than the write: on SQLite two statements that sqlite3
prepares once and caches (the transition INSERT, and the entity upsert run once per
entity); on PostgreSQL one multi-row ``INSERT ... RETURNING`` of the transitions and one
multi-row upsert of the entities, two round trips whatever the number of rows. The entity
write is an upsert on both (``INSERT ... ON CONFLICT ("kind", "entity_id") DO UPDATE``) that
sets the state, the terminal flag, the data and the time, never the ``owner``: the front end
that inserted the row keeps it. The tables and every other query stay Peewee's.

Several front ends (``serve`` processes, each on its own address) may share one PostgreSQL
journal, each with a :class:`Journal` naming it (``front_end=``):

- the entities it inserts are its own (``owner``); :meth:`Journal.live_entities` returns
  by default only this front end's, and :meth:`Journal.server_id` is per front end;
- each holds a *lease* in ``front_ends`` (:meth:`Journal.register_front_end`, renewed by
  :meth:`Journal.renew_lease`); another front end may take over one whose lease ran out
  (:meth:`Journal.take_over`: one conditional UPDATE, so exactly one wins) and end its
  containers. Leases are epoch seconds of each front end's own clock (``time.time()``),
  written by one front end and compared by another: **the front ends' clocks must agree
  (NTP) to well under a lease**, or a live front end can be taken for dead;
- the containers each holds on each hypervisor host are counted in ``capacity``, so that
  together they keep under a host's limit (:meth:`Journal.claim_capacity`, serialised per
  host by a PostgreSQL advisory lock, or SQLite's write lock);
- they tell each other things through PostgreSQL's NOTIFY (:meth:`Journal.notify`;
  journal/notify.py listens).

None of these journals a transition: they are the front ends' bookkeeping, not lifecycles.

Durability: a file journal is in WAL mode. A commit is *synced* (``synchronous=FULL``: the
WAL is fsync'd before the commit returns, so the rows survive a power loss) unless the
writer asks for less (``record_many(..., sync=False)``: ``synchronous=NORMAL``, no fsync;
the rows survive a crash or kill of the server process, and reach the disk with the next
synced commit or checkpoint, which fsyncs the WAL up to and including them). Client
sessions ask for less: they own nothing a restart must recover, and their rows were
three fsyncs per request.

On PostgreSQL a commit is synced as the server is configured (``synchronous_commit``, on by
default: the commit returns once the WAL is flushed); an unsynced one runs
``SET LOCAL synchronous_commit = off`` in its transaction: the commit returns before the
flush, the rows survive the front end being killed (they are the server's already) and a
crash of the PostgreSQL server can lose the last ones (at most three times
``wal_writer_delay``, 600 ms by default), never half a transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import peewee

from anweddol_actors.errors import AnweddolError
from anweddol_actors.journal import schema
from anweddol_actors.journal.database import (
    MEMORY,
    DatabaseError,
    connection_lost,
    driver_errors,
    drop_connection,
    one_line,
    open_database,
    parse_location,
)
from anweddol_actors.journal.models import Models, bind_models

log = logging.getLogger(__name__)

DEFAULT_DATABASE_PATH = "/var/lib/anweddol_actors/journal.sqlite3"

# A front end's name: it appears in the owner column, a meta key, a NOTIFY channel
# ("anweddol." + name, within PostgreSQL's 63 bytes) and the logs.
FRONT_END_NAME = re.compile(r"[A-Za-z0-9_.-]{1,48}")


class _Mine:
    """The type of :data:`MINE`."""

    def __repr__(self) -> str:
        return "MINE"


# ``live_entities(owner=MINE)``: the entities of the front end this journal writes for.
MINE = _Mine()


class JournalError(AnweddolError):
    """The journal could not be opened, read or written."""


def database_path(url: str | os.PathLike[str]) -> str | None:
    """The SQLite path (or ``:memory:``) named by *url*, None for a PostgreSQL URL (the
    journal is then no file of this host).

    Accepted: ``:memory:``, a file path, ``sqlite:///relative/path``,
    ``sqlite:////absolute/path``, ``sqlite:///:memory:``,
    ``postgresql://USER[:PASSWORD]@HOST:PORT/DBNAME``.
    """
    try:
        location = parse_location(url)
    except DatabaseError as exc:
        raise JournalError(f"journal: {exc}") from None
    return None if location.is_postgresql else location.path


# The hot path's statements (see the module docstring). Column names are the models'
# field names; "trigger" is an SQL keyword, hence the quotes, as Peewee writes them.
_INSERT_TRANSITION = (
    'INSERT INTO "transitions" ("time", "kind", "entity_id", "trigger", "source", "dest",'
    ' "context", "details") VALUES (?, ?, ?, ?, ?, ?, ?, ?)'
)
# An upsert, not INSERT OR REPLACE (which deletes the row and inserts a new one): the owner
# an entity got at its first row is kept when another front end journals a transition of it.
_UPSERT_ENTITY = (
    'INSERT INTO "entities" ("kind", "entity_id", "state", "terminal", "data", "updated",'
    ' "owner") VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT ("kind", "entity_id") DO UPDATE SET'
    ' "state" = excluded."state", "terminal" = excluded."terminal",'
    ' "data" = excluded."data", "updated" = excluded."updated"'
)
# PostgreSQL's: one statement for all the rows of a commit (a round trip each); the VALUES
# groups are repeated once per row.
_PG_INSERT_TRANSITIONS = (
    'INSERT INTO "transitions" ("time", "kind", "entity_id", "trigger", "source", "dest",'
    ' "context", "details") VALUES {values} RETURNING "id"'
)
_PG_TRANSITION_VALUES = "(%s, %s, %s, %s, %s, %s, %s, %s)"
_PG_UPSERT_ENTITIES = (
    'INSERT INTO "entities" ("kind", "entity_id", "state", "terminal", "data", "updated",'
    ' "owner") VALUES {values} ON CONFLICT ("kind", "entity_id") DO UPDATE SET'
    ' "state" = EXCLUDED."state", "terminal" = EXCLUDED."terminal",'
    ' "data" = EXCLUDED."data", "updated" = EXCLUDED."updated"'
)
_PG_ENTITY_VALUES = "(%s, %s, %s, %s, %s, %s, %s)"
_PG_UNSYNCED = "SET LOCAL synchronous_commit = off"
# pg_advisory_xact_lock's first key for "claiming capacity on a host" (the second is the
# host name's hash); a pair of keys never meets schema.py's single-key migration lock.
_CAPACITY_LOCK = 0x63617061


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Journal:
    """Durable record of the entities' lifecycles. Safe to share between threads."""

    def __init__(
        self,
        url: str | os.PathLike[str] = DEFAULT_DATABASE_PATH,
        *,
        create: bool = True,
        front_end: str | None = None,
    ):
        try:
            location = parse_location(url)
        except DatabaseError as exc:
            raise JournalError(f"journal: {exc}") from None
        if front_end is not None and not FRONT_END_NAME.fullmatch(front_end):
            raise JournalError(
                f"journal: front end name {front_end!r} is not 1 to 48 of A-Z a-z 0-9 _ . -"
            )
        # The front end this journal writes for (several share one PostgreSQL journal), or
        # None for the single unnamed one: the owner of the entities it creates.
        self.front_end = front_end
        self._owner = front_end or ""
        self.path = location.path  # the file, or the PostgreSQL URL without its password
        self.postgresql = location.is_postgresql
        file = not self.postgresql and self.path != MEMORY
        if file:
            parent = Path(self.path).parent
            if not create and not Path(self.path).exists():
                raise JournalError(f"journal database not found: {self.path}")
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JournalError(f"cannot create {parent}: {exc.strerror}") from exc
        self._lock = threading.RLock()
        self._errors = driver_errors()
        self._db = open_database(
            location,
            sqlite_pragmas={"journal_mode": "wal", "synchronous": "full", "foreign_keys": 1}
            if file
            else {},
        )
        self._closed = False
        self._models: Models = bind_models(self._db)
        # How the JSON columns are written (the model field's own conversion, so rows
        # written by the hot path read back exactly as Peewee's would).
        self._json = self._models.transition.details.db_value
        # The SQLite connection's current ``synchronous`` level: switched only when a
        # commit asks for another (a file journal; ``:memory:`` has nothing to sync, and
        # PostgreSQL sets it per transaction).
        self._synchronous = "full" if file else None
        # Write transactions committed: one fsync each on a file journal. Read by tests and
        # benchmarks to show what a connection costs the disk.
        self.commits = 0
        # Told the rows of each committed transaction (``rows -> None``), after the commit
        # and outside the lock: the server's metrics count transitions there. It must be
        # cheap; what it raises is logged, never the writer's.
        self.on_recorded: Callable[[list[dict[str, Any]]], None] | None = None
        # The hosts' drain states, read once: every STAT asks (STAT's ``available``). This
        # journal's own ``set_host_enabled`` keeps them; another front end's change is read
        # by ``reload_host_states``.
        self._host_states: dict[str, bool] | None = None
        # Compared against when a uuid is unknown, so that a miss costs what a hit costs.
        self._decoy_digest = _sha256(secrets.token_hex(32))
        try:
            self._db.connect()
            applied = schema.migrate(self._db, self._models)
        except (*self._errors, schema.SchemaError) as exc:
            if not self._db.is_closed():
                drop_connection(self._db)  # not close(): a broken link would raise again
            raise JournalError(f"cannot open journal {self.path}: {one_line(exc)}") from exc
        for migration in applied:
            log.info(
                "journal %s: schema migrated to version %d (%s)",
                self.path,
                migration.version,
                migration.what,
            )

    # -- writing -----------------------------------------------------------------------

    def record(
        self,
        *,
        kind: str,
        entity_id: str,
        trigger: str,
        source: str,
        dest: str,
        context: int | None = None,
        details: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        terminal: bool = False,
    ) -> int:
        """Write one transition row and the entity's current-state row in one transaction.

        Returns the transition's id. Either both rows are durable or neither is.
        """
        return self.record_many(
            [
                {
                    "kind": kind,
                    "entity_id": entity_id,
                    "trigger": trigger,
                    "source": source,
                    "dest": dest,
                    "context": context,
                    "details": details,
                    "data": data,
                    "terminal": terminal,
                }
            ]
        )[0]

    def record_many(self, rows: list[dict[str, Any]], *, sync: bool = True) -> list[int]:
        """Write several transitions (each a dict of :meth:`record`'s arguments, plus an
        optional ``time``, ISO 8601 UTC, when it was taken) in one transaction: one
        commit. Each row's entity row is left at the state of its last transition.
        Returns the transitions' ids, in order; all are written or none.

        ``sync``: the commit waits for the disk (fsync) before it returns; False commits
        without waiting, for rows that need only survive the server process (see the
        module docstring)."""
        with self._guard(write=True, what="record a transition", sync=sync):
            if self.postgresql:
                ids = self._record_many_postgresql(rows)
            else:
                ids = self._record_many_sqlite(rows)
        self._observe(rows)
        return ids

    def _statement_values(self, rows: list[dict[str, Any]]) -> tuple[list[tuple], list[tuple]]:
        """Both backends' statement parameters: one tuple per transition, and one per
        entity (at the state of its last transition in ``rows``, owned by this front end
        if the row is new)."""
        dump, owner = self._json, self._owner
        transitions: list[tuple] = []
        latest: dict[tuple[str, str], tuple] = {}
        for row in rows:
            now = row.get("time") or _now()
            kind, entity_id = row["kind"], str(row["entity_id"])
            transitions.append(
                (
                    now,
                    kind,
                    entity_id,
                    row["trigger"],
                    row["source"],
                    row["dest"],
                    row.get("context"),
                    dump(row.get("details")),
                )
            )
            latest[(kind, entity_id)] = (
                kind,
                entity_id,
                row["dest"],
                bool(row.get("terminal")),
                dump(row.get("data") or {}),
                now,
                owner,
            )
        return transitions, list(latest.values())

    def _record_many_sqlite(self, rows: list[dict[str, Any]]) -> list[int]:
        """:meth:`record_many`'s prepared statements on SQLite (inside its transaction)."""
        transitions, entities = self._statement_values(rows)
        cursor = self._db.cursor()
        ids: list[int] = []
        for values in transitions:
            cursor.execute(_INSERT_TRANSITION, values)
            ids.append(cursor.lastrowid)
        cursor.executemany(_UPSERT_ENTITY, entities)
        return ids

    def _record_many_postgresql(self, rows: list[dict[str, Any]]) -> list[int]:
        """:meth:`record_many`'s two statements on PostgreSQL (inside its transaction)."""
        if not rows:
            return []
        transitions, entities = self._statement_values(rows)
        cursor = self._db.cursor()
        values = ", ".join([_PG_TRANSITION_VALUES] * len(transitions))
        cursor.execute(
            _PG_INSERT_TRANSITIONS.format(values=values),
            [value for transition in transitions for value in transition],
        )
        # One statement draws its ids from the sequence row after row, in VALUES order.
        ids = sorted(row[0] for row in cursor.fetchall())
        values = ", ".join([_PG_ENTITY_VALUES] * len(entities))
        cursor.execute(
            _PG_UPSERT_ENTITIES.format(values=values),
            [value for entity in entities for value in entity],
        )
        return ids

    def _observe(self, rows: list[dict[str, Any]]) -> None:
        observer = self.on_recorded
        if observer is not None:
            try:
                observer(rows)
            except Exception:  # the rows are durable: a miscount must not undo the fire
                log.exception("journal: the on_recorded observer raised")

    def store_credentials(self, container_uuid: str, client_token: str) -> None:
        """Remember a (container uuid, client token) pair as SHA-256 digests only."""
        credential = self._models.credential
        token_sha256, created = _sha256(client_token), _now()
        with self._guard(write=True, what="store credentials"):
            credential.insert(
                uuid_sha256=_sha256(str(container_uuid)), token_sha256=token_sha256, created=created
            ).on_conflict(
                conflict_target=[credential.uuid_sha256],
                update={credential.token_sha256: token_sha256, credential.created: created},
            ).execute()

    def delete_credentials(self, container_uuid: str) -> bool:
        """Forget a container's credentials; False when there were none."""
        credential = self._models.credential
        with self._guard(write=True, what="delete credentials"):
            query = credential.delete().where(
                credential.uuid_sha256 == _sha256(str(container_uuid))
            )
            return query.execute() > 0

    def record_host_key(self, entity_id: str, key: str) -> None:
        """Remember the guest host key first seen for a container (``TYPE BASE64``)."""
        host_key, recorded = self._models.host_key, _now()
        with self._guard(write=True, what="record a host key"):
            host_key.insert(entity_id=str(entity_id), key=key, recorded=recorded).on_conflict(
                conflict_target=[host_key.entity_id],
                update={host_key.key: key, host_key.recorded: recorded},
            ).execute()

    def server_id(self, legacy: Callable[[], str] | None = None) -> str:
        """The id of the server (the front end) this journal belongs to, created once and
        kept here: meta key ``server_id``, or ``server_id:NAME`` for front end NAME, so
        that two front ends never mark their domains alike.

        It marks the server's libvirt domains, so that a restart recognises its own
        leftovers. A journal written by a version that kept no id, but holding history,
        takes ``legacy()`` (the mark its domains already carry); any other gets a random
        id. An in-memory journal therefore gets a new id for each journal object. A
        PostgreSQL journal, or a named front end, was never written by that version:
        ``legacy`` is not asked.
        """
        meta = self._models.meta
        key = "server_id" if self.front_end is None else f"server_id:{self.front_end}"
        with self._guard(write=True, what="read or create the server id"):
            row = meta.get_or_none(meta.key == key)
            if row is not None:
                return row.value
            has_history = (
                not self.postgresql
                and self.front_end is None
                and self._models.transition.select().limit(1).exists()
            )
            value = legacy() if legacy is not None and has_history else uuid.uuid4().hex[:16]
            meta.create(key=key, value=value)
            return value

    def set_host_enabled(self, name: str, enabled: bool) -> None:
        """Record an administrator's ``hosts drain`` (False) or ``hosts enable`` (True)."""
        model = self._models.host_state
        with self._guard(write=True, what="record a host's state"):
            model.insert(name=name, enabled=enabled, changed=_now()).on_conflict(
                conflict_target=[model.name],
                update={model.enabled: enabled, model.changed: _now()},
            ).execute()
        # After the commit: a failed write leaves the known state as it was.
        if self._host_states is not None:
            self._host_states[name] = enabled

    def reload_host_states(self) -> None:
        """Read the hosts' drain states again: another front end sharing the journal may
        have changed them (its ``hosts drain`` / ``hosts enable``)."""
        model = self._models.host_state
        with self._guard(write=False, what="read the hosts' states"):
            self._host_states = {row.name: bool(row.enabled) for row in model.select()}

    # -- front ends: leases ------------------------------------------------------------

    def register_front_end(self, address: str, lease: float) -> None:
        """Record this front end (its name, the address it serves) with a lease of
        ``lease`` seconds from now, to be renewed (:meth:`renew_lease`) well before it runs
        out. A front end registering again (a restart) gets a fresh lease, unless another
        front end is still ending its containers (a live takeover): that is refused."""
        name = self._require_name("register a front end")
        until = self._lease_until(lease)
        model = self._models.front_end
        with self._guard(write=True, what=f"register front end {name}", immediate=True):
            row = model.get_or_none(model.name == name)
            if row is not None and row.taken_by is not None and row.taken_by != name:
                taker = model.get_or_none(model.name == row.taken_by)
                if (
                    taker is not None
                    and taker.taken_by is None
                    and taker.lease_until >= time.time()
                ):
                    raise JournalError(
                        f"front end {name} is being taken over by front end {row.taken_by},"
                        " which is ending its containers: start it again once that is done"
                    )
            renewed = _now()
            model.insert(
                name=name, address=address, lease_until=until, renewed=renewed, taken_by=None
            ).on_conflict(
                conflict_target=[model.name],
                update={
                    model.address: address,
                    model.lease_until: until,
                    model.renewed: renewed,
                    model.taken_by: None,
                },
            ).execute()

    def renew_lease(self, lease: float) -> bool:
        """Extend this front end's lease to ``lease`` seconds from now. False when it can
        no longer be: another front end took it over, or its row is gone (unregistered,
        or removed at the end of a takeover); the front end must then stop serving."""
        name = self._require_name("renew a lease")
        until = self._lease_until(lease)
        model = self._models.front_end
        with self._guard(write=True, what=f"renew the lease of front end {name}", immediate=True):
            query = model.update(lease_until=until, renewed=_now()).where(
                (model.name == name) & model.taken_by.is_null()
            )
            return query.execute() == 1

    def unregister_front_end(self, name: str | None = None) -> bool:
        """Remove a front end's row. Without ``name``: this front end's, at a clean stop
        (not when another took it over: that one's takeover must still find it). With
        the name of a front end this one took over: the end of that takeover. Returns
        whether a row was removed."""
        me = self._require_name("unregister a front end")
        model = self._models.front_end
        if name is None or name == me:
            condition = (model.name == me) & model.taken_by.is_null()
        else:
            condition = (model.name == name) & (model.taken_by == me)
        with self._guard(write=True, what=f"unregister front end {name or me}"):
            return model.delete().where(condition).execute() > 0

    def front_ends(self) -> list[dict]:
        """Every registered front end, by name: ``name``, ``address``, ``lease_until``
        (epoch seconds), ``taken_by`` (None, or the front end ending its containers) and
        ``expired`` (its lease ran out, by this host's clock)."""
        model = self._models.front_end
        query = model.select(model.name, model.address, model.lease_until, model.taken_by).order_by(
            model.name
        )
        with self._guard(write=False, what="read the front ends"):
            rows = list(query.dicts())
        now = time.time()
        for row in rows:
            row["expired"] = row["lease_until"] < now
        return rows

    def expired_front_ends(self) -> list[str]:
        """The other front ends whose containers this one should end (:meth:`take_over`
        first), by name: their lease ran out and nobody took them over; or this front end
        took them over (a takeover cut short resumes); or the front end that took them
        over is itself expired or gone (its takeover was cut short for good). None while
        this front end's own lease is not live (unregistered, run out, or taken over)."""
        me = self._require_name("look for expired front ends")
        model = self._models.front_end
        query = model.select(model.name).where(self._takeable(me)).order_by(model.name)
        with self._guard(write=False, what="read the front ends"):
            return [row.name for row in query]

    def take_over(self, name: str) -> bool:
        """Claim the expired front end ``name`` (one of :meth:`expired_front_ends`), so
        that this front end ends its containers. One conditional UPDATE: of several front
        ends trying at once exactly one wins (True); the others get False, as does a
        front end that renewed its lease in time. True again for a takeover of this one's
        that was cut short."""
        me = self._require_name("take over a front end")
        model = self._models.front_end
        with self._guard(write=True, what=f"take over front end {name}", immediate=True):
            query = model.update(taken_by=me).where((model.name == name) & self._takeable(me))
            return query.execute() == 1

    def _takeable(self, me: str) -> peewee.Expression:
        """The front ends (rows) that ``me`` may take over now (see expired_front_ends):
        none unless ``me`` itself holds a live lease, so that a front end that was taken
        for dead, or never registered, ends nobody's containers."""
        model, now = self._models.front_end, time.time()

        def alive(name: peewee.Node, alias: str) -> peewee.Expression:
            other = model.alias(alias)
            query = other.select(other.name).where(
                (other.name == name) & other.taken_by.is_null() & (other.lease_until >= now)
            )
            return peewee.fn.EXISTS(query)

        return (
            (model.name != me)
            & alive(me, "me")
            & (
                (model.taken_by.is_null() & (model.lease_until < now))
                | (model.taken_by == me)
                | (model.taken_by.is_null(False) & ~alive(model.taken_by, "taker"))
            )
        )

    def _require_name(self, what: str) -> str:
        if self.front_end is None:
            raise JournalError(f"cannot {what}: this journal belongs to no named front end")
        return self.front_end

    @staticmethod
    def _lease_until(lease: float) -> float:
        # The front ends' clocks must agree (NTP) to well under a lease: see the module
        # docstring.
        if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not lease > 0:
            raise JournalError(f"a lease must be a positive number of seconds, not {lease!r}")
        return time.time() + float(lease)

    # -- front ends: shared capacity ---------------------------------------------------

    def claim_capacity(self, host: str, used_after: int, limit: int | None) -> bool:
        """Set this front end's count of containers on ``host`` to ``used_after`` if the
        other front ends' counts there plus ``used_after`` stay within ``limit`` (None:
        no limit). Atomic across front ends: claims on one host are serialised (a
        PostgreSQL advisory lock on the host's name; SQLite's write lock), so that two
        front ends cannot both take the last slot. False, and nothing written, when it
        would exceed the limit."""
        self._check_count("used_after", used_after)
        if limit is not None:
            self._check_count("limit", limit)
        model, me = self._models.capacity, self._owner
        with self._guard(write=True, what=f"claim capacity on host {host}", immediate=True):
            if self.postgresql:
                self._db.execute_sql(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_CAPACITY_LOCK, host)
                )
            if limit is not None:
                others = (
                    model.select(peewee.fn.COALESCE(peewee.fn.SUM(model.used), 0))
                    .where((model.host == host) & (model.front_end != me))
                    .scalar()
                )
                if int(others) + used_after > limit:
                    return False
            self._upsert_capacity(host, used_after)
        return True

    def report_capacity(self, host: str, used: int) -> None:
        """Set this front end's count of containers on ``host`` (absolute: saying it twice
        is saying it once), without a limit: for counts that went down, or a recount."""
        self._check_count("used", used)
        with self._guard(write=True, what=f"report capacity on host {host}"):
            self._upsert_capacity(host, used)

    def capacity_of_others(self) -> dict[str, int]:
        """The containers the other front ends hold, per host (hosts they have rows on)."""
        model = self._models.capacity
        total = peewee.fn.SUM(model.used)
        query = (
            model.select(model.host, total.alias("used"))
            .where(model.front_end != self._owner)
            .group_by(model.host)
        )
        with self._guard(write=False, what="read the other front ends' capacity"):
            return {row["host"]: int(row["used"]) for row in query.dicts()}

    def drop_capacity(self, front_end: str) -> int:
        """Forget front end ``front_end``'s counts (its containers were ended after a
        takeover); returns how many hosts' rows went."""
        model = self._models.capacity
        with self._guard(write=True, what=f"drop the capacity of front end {front_end}"):
            return model.delete().where(model.front_end == front_end).execute()

    def _upsert_capacity(self, host: str, used: int) -> None:
        model = self._models.capacity
        model.insert(host=host, front_end=self._owner, used=used).on_conflict(
            conflict_target=[model.host, model.front_end], update={model.used: used}
        ).execute()

    @staticmethod
    def _check_count(name: str, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise JournalError(f"{name} must be a whole number >= 0, not {value!r}")

    # -- front ends: notifications -----------------------------------------------------

    def notify(self, channel: str, payload: str = "") -> None:
        """Send ``payload`` to the listeners of ``channel`` (PostgreSQL's NOTIFY; a
        journal/notify.py Listener receives it), now: not inside a transaction. A
        listener that is not connected at that moment never gets it."""
        if not self.postgresql:
            raise JournalError(
                f"cannot notify {channel}: notifications need a PostgreSQL journal,"
                f" not the SQLite {self.path}"
            )
        with self._guard(write=False, what=f"notify {channel}"):
            self._db.execute_sql("SELECT pg_notify(%s, %s)", (channel, payload))

    # -- reading -----------------------------------------------------------------------

    def host_enabled(self, name: str) -> bool:
        """Whether new containers may be placed on host ``name`` (True unless drained)."""
        states = self._host_states
        if states is None:
            model = self._models.host_state
            with self._guard(write=False, what="read the hosts' states"):
                if self._host_states is None:
                    self._host_states = {row.name: bool(row.enabled) for row in model.select()}
                states = self._host_states
        return states.get(name, True)

    def host_key(self, entity_id: str) -> str | None:
        """The host key recorded for a container, or None before its first login."""
        host_key = self._models.host_key
        with self._guard(write=False, what="read a host key"):
            row = host_key.get_or_none(host_key.entity_id == str(entity_id))
        return None if row is None else row.key

    def verify_credentials(self, container_uuid: str, client_token: str) -> bool:
        """True when *client_token* is the one stored for *container_uuid*.

        The token comparison runs whether or not the uuid is known, in constant time.
        """
        credential = self._models.credential
        candidate = _sha256(client_token)
        with self._guard(write=False, what="verify credentials"):
            row = credential.get_or_none(credential.uuid_sha256 == _sha256(str(container_uuid)))
        stored = row.token_sha256 if row is not None else self._decoy_digest
        matches = hmac.compare_digest(stored.encode("ascii"), candidate.encode("ascii"))
        return matches & (row is not None)

    def has_credentials(self, container_uuid: str) -> bool:
        """Whether credentials are stored for a container (its client can still use it)."""
        credential = self._models.credential
        with self._guard(write=False, what="read credentials"):
            row = credential.get_or_none(credential.uuid_sha256 == _sha256(str(container_uuid)))
        return row is not None

    def history(self, entity_id: str | None = None, kind: str | None = None) -> list[dict]:
        """Transitions, oldest first, optionally of one entity and/or one kind."""
        transition = self._models.transition
        query = transition.select().order_by(transition.id)
        if entity_id is not None:
            query = query.where(transition.entity_id == str(entity_id))
        if kind is not None:
            query = query.where(transition.kind == kind)
        with self._guard(write=False, what="read the history"):
            return list(query.dicts())

    def entity(self, entity_id: str, kind: str | None = None) -> dict | None:
        """The entity's current-state row, or None.

        Different kinds may share an id (a container and its forwarder); pass *kind* then,
        or JournalError is raised.
        """
        rows = self._entities(entity_id=str(entity_id), kind=kind)
        if len(rows) > 1:
            kinds = ", ".join(row["kind"] for row in rows)
            raise JournalError(f"entity {entity_id} exists as several kinds ({kinds})")
        return rows[0] if rows else None

    def prune(self, older_than: datetime) -> int:
        """Forget entities that ended (terminal) before ``older_than``: their entity rows
        and all their transitions, in one transaction. Live entities are never touched,
        so recovery and replay are unaffected. Returns how many entities were forgotten."""
        entity, transition = self._models.entity, self._models.transition
        cutoff = older_than.astimezone(UTC).isoformat(timespec="microseconds")
        ended = entity.select(entity.entity_id).where(
            (entity.terminal == True) & (entity.updated < cutoff)  # noqa: E712
        )
        with self._guard(write=True, what="prune the journal"):
            ids = [row.entity_id for row in ended]
            for start in range(0, len(ids), 500):  # SQLite bounds a query's parameters
                chunk = ids[start : start + 500]
                transition.delete().where(transition.entity_id.in_(chunk)).execute()
                entity.delete().where(entity.entity_id.in_(chunk)).execute()
                host_key = self._models.host_key
                host_key.delete().where(host_key.entity_id.in_(chunk)).execute()
            return len(ids)

    def live_entities(
        self, kind: str | None = None, owner: str | None | _Mine = MINE
    ) -> list[dict]:
        """Entities not in a terminal state: what a restarted server must reconcile.

        ``owner``: by default (:data:`MINE`) this front end's own entities only; None:
        every front end's; a name: that front end's ("" the unnamed one's)."""
        if owner is MINE:
            owner = self._owner
        return self._entities(kind=kind, live=True, owner=owner)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if not self._db.is_closed():
                try:
                    self._db.close()
                except self._errors:  # the server dropped it already: nothing to close
                    drop_connection(self._db)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _entities(
        self,
        *,
        entity_id: str | None = None,
        kind: str | None = None,
        live: bool = False,
        owner: str | None = None,
    ) -> list[dict]:
        entity = self._models.entity
        # `terminal` stays inside: callers ask live_entities() instead.
        query = entity.select(
            entity.kind, entity.entity_id, entity.state, entity.data, entity.updated, entity.owner
        ).order_by(entity.updated, entity.kind, entity.entity_id)
        if entity_id is not None:
            query = query.where(entity.entity_id == entity_id)
        if kind is not None:
            query = query.where(entity.kind == kind)
        if live:
            query = query.where(entity.terminal == False)  # noqa: E712 (peewee expression)
        if owner is not None:
            query = query.where(entity.owner == owner)
        with self._guard(write=False, what="read entities"):
            return list(query.dicts())

    @contextmanager
    def _guard(
        self, what: str, *, write: bool, sync: bool = True, immediate: bool = False
    ) -> Iterator[None]:
        """Hold the lock (and a transaction when writing, synced or not: see the module
        docstring); report failures as JournalError. A PostgreSQL connection the server
        closed is dropped here, and reopened by the next call.

        ``immediate``: on SQLite, take the file's write lock when the transaction begins
        (``BEGIN IMMEDIATE``), for a transaction that reads then writes what it read:
        another process's writer waits for it rather than fail its commit."""
        with self._lock:
            if self._closed:
                raise JournalError(f"cannot {what}: the journal is closed")
            try:
                if self._db.is_closed():  # lost at an earlier call
                    self._db.connect()
                if write:
                    self._set_synchronous("full" if sync else "normal")
                    transaction = (
                        self._db.atomic(lock_type="IMMEDIATE")
                        if immediate and not self.postgresql
                        else self._db.atomic()
                    )
                    # Rolls back when the block raises, and when the commit itself fails.
                    with transaction:
                        if self.postgresql and not sync:
                            self._db.execute_sql(_PG_UNSYNCED)
                        yield
                    self.commits += 1
                else:
                    yield
            except self._errors as exc:
                if connection_lost(self._db):
                    drop_connection(self._db)
                raise JournalError(f"cannot {what}: {one_line(exc)}") from exc

    def _set_synchronous(self, level: str) -> None:
        """Switch the SQLite connection's ``synchronous`` level (outside a transaction,
        where SQLite allows it); nothing when it already is, for ``:memory:`` or for
        PostgreSQL."""
        if self._synchronous is None or self._synchronous == level:
            return
        self._db.execute_sql(f"PRAGMA synchronous = {level}")
        self._synchronous = level
