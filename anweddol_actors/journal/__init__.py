"""Durable journal of the entities' lifecycles (Peewee over SQLite or PostgreSQL).

The only package that imports :mod:`peewee`.
"""

from anweddol_actors.journal.store import (
    DEFAULT_DATABASE_PATH,
    MINE,
    Journal,
    JournalError,
    database_path,
)

__all__ = ["DEFAULT_DATABASE_PATH", "MINE", "Journal", "JournalError", "database_path"]
