"""The journal's schema, created or brought up to date when a journal opens.

The ``meta`` table holds a ``schema_version`` fact: the number of the last migration applied.
A journal opens by applying, in order and in one transaction, every migration above that
number (a new database starts at 0 and gets them all), so a journal written by an older
version of the server is upgraded in place and keeps its rows. A journal whose version is
higher than the last migration known here was written by a newer server: it is refused
rather than written with a schema this version does not know.

Two processes opening one journal at once (a server and the command line) must not both
migrate it: SQLite's ``BEGIN IMMEDIATE`` and a PostgreSQL transaction-scoped advisory lock
make the second wait for the first, then find nothing left to do.

A migration receives the models and a ``playhouse.migrate`` schema migrator for this
database, which writes the right ``ALTER TABLE`` for SQLite and for PostgreSQL: migration 3
adds the entities' ``owner`` column with it. Creating a table goes through the model
(``safe=True``: a table an older server already created is left as it is), and every step
of a migration tolerates finding its work done (a new journal's tables come from today's
models, columns and all; an index is made ``IF NOT EXISTS``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import peewee
from playhouse.migrate import SchemaMigrator

from anweddol_actors.errors import AnweddolError
from anweddol_actors.journal.models import Models

SCHEMA_VERSION_KEY = "schema_version"
# pg_advisory_xact_lock's key for "migrating the journal" (any constant unique to us).
_MIGRATION_LOCK = 0x616E7765


class SchemaError(AnweddolError):
    """The journal's schema cannot be used by this version of the server."""


@dataclass(frozen=True)
class Migration:
    version: int
    what: str
    apply: Callable[[Models, SchemaMigrator], None]


def _first_tables(models: Models, migrator: SchemaMigrator) -> None:
    # What the journal held before versioning. safe=True: journals written before this
    # version already have some or all of them (the oldest lack meta and host_keys).
    migrator.database.create_tables(
        [models.transition, models.entity, models.credential, models.host_key, models.meta],
        safe=True,
    )


def _hosts(models: Models, migrator: SchemaMigrator) -> None:
    migrator.database.create_tables([models.host_state], safe=True)


def _front_ends(models: Models, migrator: SchemaMigrator) -> None:
    database, entity = migrator.database, models.entity
    table = entity._meta.table_name
    # A journal made new by this version got the column with its table (migration 1).
    if "owner" not in {column.name for column in database.get_columns(table)}:
        # NOT NULL with its DEFAULT in one ALTER TABLE (both backends fill the rows there
        # with ''), rather than the migrator's add_column: on SQLite that adds a NOT NULL
        # by copying the whole table.
        migrator.alter_add_column(table, "owner", entity.owner, allow_not_null=True).run()
    # The index of "the live entities of one front end" (Journal.live_entities), in place
    # of the index on "terminal" alone, which it serves as well (its first column): one
    # index, as before, for the hot path's entity write to keep up to date.
    # IF [NOT] EXISTS, as for the tables: a journal may have either already.
    database.execute_sql('DROP INDEX IF EXISTS "entities_terminal"')
    database.execute_sql(
        f'CREATE INDEX IF NOT EXISTS "{table}_terminal_owner" ON "{table}" ("terminal", "owner")'
    )
    database.create_tables([models.front_end, models.capacity], safe=True)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "transitions, entities, credentials, host keys, meta", _first_tables),
    Migration(2, "hosts: an administrator's drain or enable of each hypervisor host", _hosts),
    Migration(
        3,
        "front ends: entities' owner, the front ends' leases, their shared capacity",
        _front_ends,
    ),
)
LATEST = MIGRATIONS[-1].version


def schema_version(database: peewee.Database, models: Models) -> int:
    """The journal's ``schema_version`` (0 for a new database or one from before
    versioning)."""
    if not database.table_exists(models.meta._meta.table_name):
        return 0
    row = models.meta.get_or_none(models.meta.key == SCHEMA_VERSION_KEY)
    return 0 if row is None else int(row.value)


def migrate(database: peewee.Database, models: Models) -> list[Migration]:
    """Bring the journal's schema to :data:`LATEST`; returns the migrations applied."""
    postgresql = isinstance(database, peewee.PostgresqlDatabase)
    transaction = database.atomic() if postgresql else database.atomic(lock_type="IMMEDIATE")
    with transaction:
        if postgresql:
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        current = schema_version(database, models)
        if current > LATEST:
            raise SchemaError(
                f"journal schema version {current} is newer than this server knows "
                f"({LATEST}): it was written by a newer anweddol_actors"
            )
        pending = [migration for migration in MIGRATIONS if migration.version > current]
        if not pending:
            return []
        migrator = SchemaMigrator.from_database(database)
        for migration in pending:
            migration.apply(models, migrator)
        meta = models.meta
        meta.insert(key=SCHEMA_VERSION_KEY, value=str(LATEST)).on_conflict(
            conflict_target=[meta.key], update={meta.value: str(LATEST)}
        ).execute()
    return pending
