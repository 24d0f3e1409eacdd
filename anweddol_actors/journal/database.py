"""Where a store lives: a SQLite file (or ``:memory:``) or a PostgreSQL database, named by
one string, and the Peewee database object that opens it.

Both the journal and the access tokens (policy/access_tokens.py, for a ``postgresql://``
URL) go through here, so that only this package imports Peewee and the PostgreSQL driver.

PostgreSQL connections are bounded at every step, so no call of the journal can hang on a
server that went away: ``connect_timeout`` for the connection, ``statement_timeout`` for a
statement (lock waits included), and TCP keepalives plus ``tcp_user_timeout`` for a server
that stops answering without closing the connection (a host that froze or a cut cable).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee

from anweddol_actors.errors import AnweddolError

MEMORY = ":memory:"
_SQLITE_URL_PREFIX = "sqlite:///"
POSTGRESQL_SCHEMES = ("postgresql", "postgres")

# Defaults for a PostgreSQL connection, each overridable in the URL's query
# (``?connect_timeout=5``). Seconds, except the two libpq takes in milliseconds.
CONNECT_TIMEOUT = 10
STATEMENT_TIMEOUT_MS = 30_000
_DEFAULT_PARAMETERS = {
    "connect_timeout": str(CONNECT_TIMEOUT),
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    # Unacknowledged data for this long closes the connection (libpq >= 12).
    "tcp_user_timeout": "20000",
    "application_name": "anweddol_actors",
}


class DatabaseError(AnweddolError):
    """A database location is malformed or names something this server cannot use."""


@dataclass(frozen=True)
class Location:
    """A parsed ``server.database`` (or token database) value."""

    backend: str  # "sqlite" or "postgresql"
    # sqlite: the file path or ":memory:"; postgresql: the URL with its password masked.
    path: str
    # postgresql only: the database name and the connection's keyword arguments.
    database: str = ""
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def is_postgresql(self) -> bool:
        return self.backend == "postgresql"


def is_postgresql_url(url: str | os.PathLike[str]) -> bool:
    """Whether *url* names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    scheme, separator, _ = os.fspath(url).partition("://")
    return bool(separator) and scheme.lower() in POSTGRESQL_SCHEMES


def redacted(text: str) -> str:
    """``text`` with the password of a PostgreSQL URL replaced by ``***``, for logs and
    errors (anything else unchanged)."""
    if not is_postgresql_url(text):
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def parse_location(url: str | os.PathLike[str]) -> Location:
    """Parse a database location.

    Accepted: ``:memory:``, a file path, ``sqlite:///relative/path``,
    ``sqlite:////absolute/path``, ``sqlite:///:memory:``, and
    ``postgresql://[user[:password]@]host[:port]/dbname[?libpq_parameter=value&...]``.
    """
    text = os.fspath(url)
    if is_postgresql_url(text):
        return _parse_postgresql(text)
    if text.startswith("sqlite:"):
        if not text.startswith(_SQLITE_URL_PREFIX):
            raise DatabaseError(f"malformed database URL {text!r} (expected sqlite:///PATH)")
        text = text[len(_SQLITE_URL_PREFIX) :]
    elif "://" in text:
        raise DatabaseError(
            f"unsupported database URL {text!r}: use a file path, sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DBNAME"
        )
    if not text:
        raise DatabaseError("empty database path")
    return Location("sqlite", text)


def _parse_postgresql(text: str) -> Location:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise DatabaseError(f"malformed PostgreSQL URL: {exc}") from None
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise DatabaseError("malformed PostgreSQL URL: expected postgresql://USER@HOST:PORT/DBNAME")
    parameters = dict(_DEFAULT_PARAMETERS)
    if parts.hostname:
        parameters["host"] = unquote(parts.hostname)
    if port is not None:
        parameters["port"] = str(port)
    if parts.username:
        parameters["user"] = unquote(parts.username)
    if parts.password is not None:
        parameters["password"] = unquote(parts.password)
    # Anything libpq knows (sslmode, host=/run/postgresql for a socket folder, ...).
    parameters.update(parse_qsl(parts.query, keep_blank_values=True))
    if "statement_timeout" not in parameters.get("options", ""):
        extra = f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
        parameters["options"] = f"{parameters.get('options', '')} {extra}".strip()
    return Location("postgresql", redacted(text), database, parameters)


def open_database(location: Location, *, sqlite_pragmas: dict | None = None) -> peewee.Database:
    """An unconnected Peewee database for *location*.

    ``thread_safe=False``: one connection state for all threads; the caller serialises them
    with its own lock (sqlite3 must then be told to accept the connection from any thread;
    a psycopg2 connection may be shared between threads as it is).
    """
    if location.is_postgresql:
        return peewee.PostgresqlDatabase(
            location.database, thread_safe=False, autoconnect=False, **location.parameters
        )
    return peewee.SqliteDatabase(
        location.path,
        thread_safe=False,
        autoconnect=False,
        check_same_thread=False,
        timeout=30,
        pragmas=sqlite_pragmas or {},
    )


def connect_postgresql(location: Location):  # -> psycopg2 connection (an optional driver)
    """A psycopg2 connection of its own to *location*'s database, with the same bounds as
    the journal's (connect and statement timeouts, keepalives): for what Peewee's shared
    connection cannot do, such as LISTEN (journal/notify.py)."""
    import psycopg2  # here: a SQLite-only installation need not have the driver

    if not location.is_postgresql:
        raise DatabaseError(f"{location.path} is no PostgreSQL database")
    return psycopg2.connect(dbname=location.database, **location.parameters)


def driver_errors() -> tuple[type[BaseException], ...]:
    """The driver exceptions a store turns into its own error (besides Peewee's own,
    which wrap them for queries Peewee runs: statements run on a raw cursor raise the
    driver's)."""
    errors: list[type[BaseException]] = [peewee.PeeweeException, sqlite3.Error]
    try:
        import psycopg2  # here: a SQLite-only installation need not have the driver
    except ImportError:
        pass
    else:
        errors.append(psycopg2.Error)
    return tuple(errors)


def connection_lost(database: peewee.Database) -> bool:
    """Whether the server closed *database*'s connection (PostgreSQL): the next call must
    open a new one. A SQLite file never goes away under its connection."""
    if not isinstance(database, peewee.PostgresqlDatabase) or database.is_closed():
        return False
    return bool(database._state.conn.closed)  # psycopg2: nonzero once the link is gone


def drop_connection(database: peewee.Database) -> None:
    """Forget a connection the server closed, without talking to it (it is gone)."""
    connection = database._state.conn
    database.dispose()  # Peewee's state only: it would otherwise try to close it itself
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - already broken: there is nothing left to close
        pass


def one_line(exc: BaseException) -> str:
    """A driver's message on one line (PostgreSQL's span several: ERROR, DETAIL, HINT)."""
    return " ".join(str(exc).split()) or type(exc).__name__
