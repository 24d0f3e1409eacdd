"""What ``server.database`` and ``access_token.access_token_database_file_path`` may name:
a SQLite file (a path; the journal also takes ``sqlite:///PATH``) or a PostgreSQL database
(``postgresql://user@host:port/dbname``).

A URL is passed on unchanged to the journal (or the token store), which opens it: no path
is made of it, no folder is created for it, nothing is handed to ``server.user``. Only its
shape is judged here, so that a typo is a configuration error naming the key, not a
failure at start.
"""

from __future__ import annotations

from urllib.parse import urlsplit

# The journal opens these URLs: what is a PostgreSQL URL, and how one is shown without
# its password, is its word.
from anweddol_actors.journal.database import POSTGRESQL_SCHEMES, redacted
from anweddol_actors.journal.database import is_postgresql_url as is_database_url

__all__ = ["POSTGRESQL_SCHEMES", "database_problem", "is_database_url", "redacted"]

_SHAPES = "a SQLite file path, sqlite:///PATH, or postgresql://user@host:port/dbname"


def database_problem(text: str, *, sqlite_url: bool = True) -> str | None:
    """Why ``text`` names no database the server can open, or None.

    ``sqlite_url``: whether ``sqlite:///PATH`` is accepted (the journal takes it; the token
    store opens a plain path). The message never repeats the URL: it may hold a password.
    """
    scheme, separator, _ = text.partition("://")
    if scheme.lower() == "sqlite" or text.lower().startswith("sqlite:"):
        if not sqlite_url:
            return "must be a SQLite file path or postgresql://user@host:port/dbname"
        if not text.startswith("sqlite:///") or text == "sqlite:///":
            return "a SQLite URL is sqlite:///PATH (sqlite:////var/lib/... for an absolute one)"
        return None
    if not separator:
        return None  # a file path, as before
    if scheme.lower() not in POSTGRESQL_SCHEMES:
        return f"unsupported database URL scheme {scheme!r}: must be {_SHAPES}"
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        return "the port of the postgresql:// URL is not a port number"
    if not parts.path.strip("/"):
        return "a postgresql:// URL names its database: postgresql://user@host:port/dbname"
    return None
