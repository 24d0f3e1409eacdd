"""The access tokens' table in a PostgreSQL database, for policy/access_tokens.py.

A token database named by a ``postgresql://`` URL lives in the table ``access_tokens`` of
that database (the journal's own database may hold it too: the names do not collide). Its
columns are the original SQLite format's (``AnweddolServerAccessTokenTable``), renamed the
PostgreSQL way: ``entry_id`` (EntryID), ``creation_timestamp`` (CreationTimestamp),
``access_token`` (AccessToken, the SHA-256 hex digest: never the token) and ``enabled``
(Enabled).

Here rather than in policy/ because only the journal package imports Peewee; the policy
keeps the token logic (generation, hashing, constant-time verification) and asks this
table for rows only. One connection under a lock, every call bounded and a connection the
server dropped reopened by the next call, as for the journal (journal/database.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import peewee

from anweddol_actors.errors import AnweddolError
from anweddol_actors.journal.database import (
    DatabaseError,
    connection_lost,
    driver_errors,
    drop_connection,
    one_line,
    open_database,
    parse_location,
)

# pg_advisory_xact_lock's key for creating the table (two processes opening a new
# database at once would otherwise race on CREATE TABLE IF NOT EXISTS).
_CREATE_LOCK = 0x616E7774


class TokenTableError(AnweddolError):
    """The token table cannot be opened, read or written; the message is one line."""


def _bind(database: peewee.Database) -> type[peewee.Model]:
    class AccessToken(peewee.Model):
        entry_id = peewee.AutoField()
        creation_timestamp = peewee.BigIntegerField()
        access_token = peewee.TextField()
        enabled = peewee.BooleanField()

        class Meta:
            table_name = "access_tokens"
            legacy_table_names = False

    database.bind([AccessToken], bind_refs=False, bind_backrefs=False)
    return AccessToken


class TokenTable:
    """The ``access_tokens`` table of one PostgreSQL database. Safe to share between
    threads."""

    def __init__(self, url: str) -> None:
        try:
            location = parse_location(url)
        except DatabaseError as exc:
            raise TokenTableError(str(exc)) from None
        if not location.is_postgresql:
            raise TokenTableError(f"{location.path}: not a postgresql:// URL")
        self.path = location.path  # without the password
        self._lock = threading.Lock()
        self._errors = driver_errors()
        self._closed = False
        self._db = open_database(location)
        self._model = _bind(self._db)
        try:
            self._db.connect()
            with self._db.atomic():
                self._db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
                self._db.create_tables([self._model], safe=True)
        except self._errors as exc:
            if not self._db.is_closed():
                drop_connection(self._db)
            raise TokenTableError(
                f"{self.path}: cannot open access token database: {one_line(exc)}"
            ) from exc

    def add(self, creation_timestamp: int, digest: str, enabled: bool) -> int:
        """Store a token's digest; returns its entry id."""
        with self._guard():
            return self._model.insert(
                creation_timestamp=creation_timestamp, access_token=digest, enabled=enabled
            ).execute()

    def digests(self) -> list[tuple[str, bool]]:
        """Every ``(digest, enabled)``, in no particular order."""
        model = self._model
        with self._guard():
            return list(model.select(model.access_token, model.enabled).tuples())

    def first_enabled(self, digest: str) -> int | None:
        """The lowest entry id of an enabled entry with this digest, or None."""
        model = self._model
        query = (
            model.select(model.entry_id)
            .where((model.access_token == digest) & (model.enabled == True))  # noqa: E712
            .order_by(model.entry_id)
            .limit(1)
        )
        with self._guard():
            row = query.tuples().first()
        return None if row is None else row[0]

    def entries(self, entry_id: int | None = None) -> list[tuple[int, int, bool]]:
        """``(entry_id, creation_timestamp, enabled)`` of every entry (or of one), oldest
        id first."""
        model = self._model
        query = model.select(model.entry_id, model.creation_timestamp, model.enabled)
        if entry_id is not None:
            query = query.where(model.entry_id == entry_id)
        with self._guard():
            return list(query.order_by(model.entry_id).tuples())

    def set_enabled(self, entry_id: int, enabled: bool) -> bool:
        """Enable or disable an entry; False if there is no such id."""
        model = self._model
        with self._guard():
            return model.update(enabled=enabled).where(model.entry_id == entry_id).execute() > 0

    def delete(self, entry_id: int) -> bool:
        """Delete an entry; False if there is no such id."""
        model = self._model
        with self._guard():
            return model.delete().where(model.entry_id == entry_id).execute() > 0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if not self._db.is_closed():
                drop_connection(self._db)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Hold the lock and a transaction; report failures as TokenTableError. A
        connection the server closed is dropped here and reopened by the next call."""
        with self._lock:
            if self._closed:
                raise TokenTableError(f"{self.path}: the access token database is closed")
            try:
                if self._db.is_closed():
                    self._db.connect()
                with self._db.atomic():
                    yield
            except self._errors as exc:
                if connection_lost(self._db):
                    drop_connection(self._db)
                raise TokenTableError(f"{self.path}: {one_line(exc)}") from exc
