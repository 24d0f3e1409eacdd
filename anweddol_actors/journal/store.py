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
prepares once and caches; on PostgreSQL one multi-row ``INSERT ... RETURNING`` of the
transitions and one multi-row upsert (``ON CONFLICT ... DO UPDATE``) of the entities, two
round trips whatever the number of rows. The tables and every other query stay Peewee's.

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
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
_REPLACE_ENTITY = (
    'INSERT OR REPLACE INTO "entities" ("kind", "entity_id", "state", "terminal", "data",'
    ' "updated") VALUES (?, ?, ?, ?, ?, ?)'
)
# PostgreSQL's: one statement for all the rows of a commit (a round trip each); the VALUES
# groups are repeated once per row.
_PG_INSERT_TRANSITIONS = (
    'INSERT INTO "transitions" ("time", "kind", "entity_id", "trigger", "source", "dest",'
    ' "context", "details") VALUES {values} RETURNING "id"'
)
_PG_TRANSITION_VALUES = "(%s, %s, %s, %s, %s, %s, %s, %s)"
_PG_UPSERT_ENTITIES = (
    'INSERT INTO "entities" ("kind", "entity_id", "state", "terminal", "data", "updated")'
    ' VALUES {values} ON CONFLICT ("kind", "entity_id") DO UPDATE SET'
    ' "state" = EXCLUDED."state", "terminal" = EXCLUDED."terminal",'
    ' "data" = EXCLUDED."data", "updated" = EXCLUDED."updated"'
)
_PG_ENTITY_VALUES = "(%s, %s, %s, %s, %s, %s)"
_PG_UNSYNCED = "SET LOCAL synchronous_commit = off"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Journal:
    """Durable record of the entities' lifecycles. Safe to share between threads."""

    def __init__(self, url: str | os.PathLike[str] = DEFAULT_DATABASE_PATH, *, create: bool = True):
        try:
            location = parse_location(url)
        except DatabaseError as exc:
            raise JournalError(f"journal: {exc}") from None
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
        # The hosts' drain states, read once: every STAT asks (STAT's ``available``), and
        # only this journal's own ``set_host_enabled`` changes them (one server per journal).
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
        entity (at the state of its last transition in ``rows``)."""
        dump = self._json
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
        cursor.executemany(_REPLACE_ENTITY, entities)
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
        """The id of the server this journal belongs to, created once and kept here.

        It marks the server's libvirt domains, so that a restart recognises its own
        leftovers. A journal written by a version that kept no id, but holding history,
        takes ``legacy()`` (the mark its domains already carry); any other gets a random
        id. An in-memory journal therefore gets a new id for each journal object. A
        PostgreSQL journal was never written by that version: ``legacy`` is not asked.
        """
        meta = self._models.meta
        with self._guard(write=True, what="read or create the server id"):
            row = meta.get_or_none(meta.key == "server_id")
            if row is not None:
                return row.value
            has_history = not self.postgresql and self._models.transition.select().limit(1).exists()
            value = legacy() if legacy is not None and has_history else uuid.uuid4().hex[:16]
            meta.create(key="server_id", value=value)
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

    def live_entities(self, kind: str | None = None) -> list[dict]:
        """Entities not in a terminal state: what a restarted server must reconcile."""
        return self._entities(kind=kind, live=True)

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
        self, *, entity_id: str | None = None, kind: str | None = None, live: bool = False
    ) -> list[dict]:
        entity = self._models.entity
        # `terminal` stays inside: callers ask live_entities() instead.
        query = entity.select(
            entity.kind, entity.entity_id, entity.state, entity.data, entity.updated
        ).order_by(entity.updated, entity.kind, entity.entity_id)
        if entity_id is not None:
            query = query.where(entity.entity_id == entity_id)
        if kind is not None:
            query = query.where(entity.kind == kind)
        if live:
            query = query.where(entity.terminal == False)  # noqa: E712 (peewee expression)
        with self._guard(write=False, what="read entities"):
            return list(query.dicts())

    @contextmanager
    def _guard(self, what: str, *, write: bool, sync: bool = True) -> Iterator[None]:
        """Hold the lock (and a transaction when writing, synced or not: see the module
        docstring); report failures as JournalError. A PostgreSQL connection the server
        closed is dropped here, and reopened by the next call."""
        with self._lock:
            if self._closed:
                raise JournalError(f"cannot {what}: the journal is closed")
            try:
                if self._db.is_closed():  # lost at an earlier call
                    self._db.connect()
                if write:
                    self._set_synchronous("full" if sync else "normal")
                    # Rolls back when the block raises, and when the commit itself fails.
                    with self._db.atomic():
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
