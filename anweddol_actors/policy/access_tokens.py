"""Access tokens: a shared secret every request must carry when the policy is enabled.

Stored as the SHA-256 hex of the token, never the token, either

- in a SQLite file with the original server's table and columns
  (``reference/specs/access_token.md``), so a token database made by the original keeps
  working here and the other way round; or
- in the ``access_tokens`` table of a PostgreSQL database, when the database is named by a
  ``postgresql://USER@HOST:PORT/DBNAME`` URL: several front ends then share one set of
  tokens. The table is the journal package's (journal/tokens.py: only it imports Peewee).

Why the stdlib ``sqlite3`` for the file and not Peewee models: the table belongs to the
original format, the file is separate from the journal, and only the journal layer imports
Peewee (STYLE.md).

Every call reads the database afresh, so a token disabled with the command line while a
server runs is refused from its next request on.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from anweddol_actors.errors import AnweddolError
from anweddol_actors.journal.database import is_postgresql_url
from anweddol_actors.journal.tokens import TokenTable, TokenTableError

__all__ = [
    "TOKEN_BYTES",
    "AccessTokenEntry",
    "AccessTokenError",
    "AccessTokenStore",
    "hash_token",
]

# 93 random bytes give the original's 124 url-safe characters.
TOKEN_BYTES = 93
# Longer candidates are refused before hashing: a client cannot make us hash megabytes.
_MAX_CANDIDATE_LENGTH = 1024

_TABLE = "AnweddolServerAccessTokenTable"
_SCHEMA = f"""CREATE TABLE IF NOT EXISTS {_TABLE} (
    EntryID INTEGER NOT NULL PRIMARY KEY,
    CreationTimestamp INTEGER NOT NULL,
    AccessToken TEXT NOT NULL,
    Enabled INTEGER NOT NULL
)"""


class AccessTokenError(AnweddolError):
    """The token database cannot be opened or used; the message is one line."""


@dataclass(frozen=True)
class AccessTokenEntry:
    """One token as listed: never the token itself, which is not stored."""

    entry_id: int
    creation_timestamp: int
    enabled: bool


def hash_token(token: str) -> str:
    """The stored form of a token: SHA-256, lowercase hex (the original's)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class _SqliteTokens:
    """The original's table in one SQLite file (or ``":memory:"``): the rows
    :class:`AccessTokenStore` asks for, through the stdlib ``sqlite3``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            if self.path != ":memory:":
                self._prepare_file(Path(self.path))
            # timeout: wait for a command-line writer instead of failing at once.
            self._db = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
            with self._db:
                self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise AccessTokenError(
                f"{self.path}: cannot open access token database: {exc}"
            ) from exc

    @staticmethod
    def _prepare_file(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            # Created owner-only: hashes are not secrets, but the list of entries is nobody
            # else's business. O_EXCL: never clobber a file that appeared meanwhile.
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except FileExistsError:
                pass

    def _query(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        try:
            with self._lock, self._db:
                return self._db.execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise AccessTokenError(f"{self.path}: {exc}") from exc

    def _update(self, sql: str, parameters: tuple) -> int:
        try:
            with self._lock, self._db:
                return self._db.execute(sql, parameters).rowcount
        except sqlite3.Error as exc:
            raise AccessTokenError(f"{self.path}: {exc}") from exc

    def add(self, creation_timestamp: int, digest: str, enabled: bool) -> int:
        try:
            with self._lock, self._db:
                cursor = self._db.execute(
                    f"INSERT INTO {_TABLE} (CreationTimestamp, AccessToken, Enabled) "
                    "VALUES (?, ?, ?)",
                    (creation_timestamp, digest, 1 if enabled else 0),
                )
                entry_id = cursor.lastrowid
        except sqlite3.Error as exc:
            raise AccessTokenError(f"{self.path}: {exc}") from exc
        assert entry_id is not None
        return entry_id

    def digests(self) -> list[tuple[str, bool]]:
        return self._query(f"SELECT AccessToken, Enabled FROM {_TABLE}")

    def first_enabled(self, digest: str) -> int | None:
        rows = self._query(
            f"SELECT EntryID FROM {_TABLE} WHERE AccessToken = ? AND Enabled = 1 "
            "ORDER BY EntryID LIMIT 1",
            (digest,),
        )
        return rows[0][0] if rows else None

    def entries(self, entry_id: int | None = None) -> list[tuple[int, int, bool]]:
        if entry_id is None:
            return self._query(
                f"SELECT EntryID, CreationTimestamp, Enabled FROM {_TABLE} ORDER BY EntryID"
            )
        return self._query(
            f"SELECT EntryID, CreationTimestamp, Enabled FROM {_TABLE} WHERE EntryID = ?",
            (entry_id,),
        )

    def set_enabled(self, entry_id: int, enabled: bool) -> bool:
        sql = f"UPDATE {_TABLE} SET Enabled = ? WHERE EntryID = ?"
        return self._update(sql, (1 if enabled else 0, entry_id)) > 0

    def delete(self, entry_id: int) -> bool:
        return self._update(f"DELETE FROM {_TABLE} WHERE EntryID = ?", (entry_id,)) > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


@contextmanager
def _postgresql_errors() -> Iterator[None]:
    """The token table's errors, as this module's (the message is already one line)."""
    try:
        yield
    except TokenTableError as exc:
        raise AccessTokenError(str(exc)) from exc


class _PostgresqlTokens:
    """The journal package's ``access_tokens`` table: the same rows as :class:`_SqliteTokens`,
    its errors made AccessTokenError."""

    def __init__(self, url: str) -> None:
        with _postgresql_errors():
            self._table = TokenTable(url)
        self.path = self._table.path

    def add(self, creation_timestamp: int, digest: str, enabled: bool) -> int:
        with _postgresql_errors():
            return self._table.add(creation_timestamp, digest, enabled)

    def digests(self) -> list[tuple[str, bool]]:
        with _postgresql_errors():
            return self._table.digests()

    def first_enabled(self, digest: str) -> int | None:
        with _postgresql_errors():
            return self._table.first_enabled(digest)

    def entries(self, entry_id: int | None = None) -> list[tuple[int, int, bool]]:
        with _postgresql_errors():
            return self._table.entries(entry_id)

    def set_enabled(self, entry_id: int, enabled: bool) -> bool:
        with _postgresql_errors():
            return self._table.set_enabled(entry_id, enabled)

    def delete(self, entry_id: int) -> bool:
        with _postgresql_errors():
            return self._table.delete(entry_id)

    def close(self) -> None:
        self._table.close()


class AccessTokenStore:
    """Thread-safe store over one SQLite file (or ``":memory:"``) or one PostgreSQL
    database (a ``postgresql://`` URL).

    One connection shared under a lock: token traffic is a few small queries per request,
    far below what would justify a pool.
    """

    def __init__(self, path: str | Path) -> None:
        text = str(path)
        self._rows = _PostgresqlTokens(text) if is_postgresql_url(text) else _SqliteTokens(text)
        self.path = self._rows.path  # a PostgreSQL URL without its password

    def add(self, disabled: bool = False) -> tuple[int, str]:
        """Create a token; returns ``(entry_id, token)``. The token is shown only here."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        entry_id = self._rows.add(int(time.time()), hash_token(token), not disabled)
        return entry_id, token

    def verify(self, token: object) -> bool:
        """True if ``token`` is an enabled token of this store.

        Compares the candidate's hash with every stored hash, enabled or not, through
        ``hmac.compare_digest`` and without stopping at a match, so the time taken says
        nothing about which entry matched, how much of a hash matched, or whether the
        matching entry is disabled. Anything that is not a string is simply refused: it
        comes straight from a client's JSON.
        """
        if not isinstance(token, str) or not token or len(token) > _MAX_CANDIDATE_LENGTH:
            return False
        candidate = hash_token(token).encode("ascii")
        rows = self._rows.digests()
        found = False
        for stored, enabled in rows:
            stored_bytes = stored.encode("ascii", "replace") if isinstance(stored, str) else b""
            match = hmac.compare_digest(candidate, stored_bytes)
            found |= match and bool(enabled)
        return found

    def entry_id(self, token: object) -> int | None:
        """The entry id of an enabled token, else None (the original's ``getEntryID``)."""
        if not self.verify(token):
            return None
        assert isinstance(token, str)
        return self._rows.first_enabled(hash_token(token))

    def get(self, entry_id: int) -> AccessTokenEntry | None:
        """One entry, or None if there is no such id."""
        rows = self._rows.entries(entry_id)
        return AccessTokenEntry(rows[0][0], rows[0][1], bool(rows[0][2])) if rows else None

    def list(self) -> list[AccessTokenEntry]:
        """Every entry, oldest id first, without tokens."""
        return [AccessTokenEntry(row[0], row[1], bool(row[2])) for row in self._rows.entries()]

    def enable(self, entry_id: int) -> bool:
        """Enable an entry; False if there is no such id."""
        return self._rows.set_enabled(entry_id, True)

    def disable(self, entry_id: int) -> bool:
        """Disable an entry (its token stops working at once); False if there is no such id."""
        return self._rows.set_enabled(entry_id, False)

    def delete(self, entry_id: int) -> bool:
        """Delete an entry; False if there is no such id."""
        return self._rows.delete(entry_id)

    def close(self) -> None:
        self._rows.close()

    def __enter__(self) -> AccessTokenStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AccessTokenStore({self.path!r})"
