"""The journal's tables, as Peewee models bound to one database.

Models are made per database (:func:`bind_models`) rather than declared once at module
level, so that several journals (tests, a server and its CLI) can be open in one process
without rebinding shared classes under each other's feet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import peewee


class JSONField(peewee.TextField):
    """JSON stored as text: SQLite has no JSON column type, and text stays greppable."""

    def db_value(self, value: Any) -> str | None:
        if value is None:
            return None
        # default=str: identifiers such as uuid.UUID or pathlib.Path arrive in details.
        return json.dumps(value, sort_keys=True, default=str)

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


@dataclass(frozen=True)
class Models:
    transition: type[peewee.Model]
    entity: type[peewee.Model]
    credential: type[peewee.Model]
    host_key: type[peewee.Model]
    meta: type[peewee.Model]
    host_state: type[peewee.Model]
    front_end: type[peewee.Model]
    capacity: type[peewee.Model]

    def all(self) -> list[type[peewee.Model]]:
        return [
            self.transition,
            self.entity,
            self.credential,
            self.host_key,
            self.meta,
            self.host_state,
            self.front_end,
            self.capacity,
        ]


def bind_models(database: peewee.Database) -> Models:
    class Base(peewee.Model):
        class Meta:
            legacy_table_names = False

    class Transition(Base):
        id = peewee.AutoField()
        time = peewee.TextField()  # ISO 8601, UTC, microseconds: sorts as it reads
        kind = peewee.TextField()
        entity_id = peewee.TextField()
        trigger = peewee.TextField()
        source = peewee.TextField()
        dest = peewee.TextField()
        context = peewee.IntegerField(null=True)
        details = JSONField(null=True)

        class Meta:
            table_name = "transitions"
            indexes = ((("entity_id", "id"), False), (("kind", "id"), False))

    class Entity(Base):
        kind = peewee.TextField()
        entity_id = peewee.TextField()
        state = peewee.TextField()
        # Written by the lifecycle, which knows the machines: the journal stays ignorant of
        # them and can still answer "what is alive?" for crash recovery. Its index is
        # ("terminal", "owner"), made by schema migration 3, not declared here: a model's
        # indexes are made with its table, and migration 1 makes the table of a journal
        # that has no owner column yet.
        terminal = peewee.BooleanField(default=False)
        data = JSONField(default=dict)
        updated = peewee.TextField()
        # The front end that first wrote the entity ("" for the unnamed single one); a
        # later transition journalled by another front end leaves it. A default in the
        # table too: the rows a migration finds get "".
        owner = peewee.TextField(default="", constraints=[peewee.SQL("DEFAULT ''")])

        class Meta:
            table_name = "entities"
            primary_key = peewee.CompositeKey("kind", "entity_id")

    class Credential(Base):
        uuid_sha256 = peewee.FixedCharField(max_length=64, primary_key=True)
        token_sha256 = peewee.FixedCharField(max_length=64)
        created = peewee.TextField()

        class Meta:
            table_name = "credentials"

    class HostKey(Base):
        # A container's guest SSH host key, as seen at its first endpoint login: public,
        # stored plain; every later login to that guest must present the same key.
        entity_id = peewee.TextField(primary_key=True)
        key = peewee.TextField()
        recorded = peewee.TextField()

        class Meta:
            table_name = "host_keys"

    class JournalFact(Base):
        # Facts about the journal itself (the server id marking this server's domains).
        key = peewee.TextField(primary_key=True)
        value = peewee.TextField()

        class Meta:
            table_name = "meta"

    class HostState(Base):
        # An administrator's word on a hypervisor host (``hosts drain``/``enable``): kept
        # across restarts; a host with no row is enabled.
        name = peewee.TextField(primary_key=True)
        enabled = peewee.BooleanField(default=True)
        changed = peewee.TextField()

        class Meta:
            table_name = "hosts"

    class FrontEnd(Base):
        # One row per running front end sharing this journal: its lease, renewed while it
        # lives. Times are epoch seconds of the front ends' clocks (journal/store.py).
        name = peewee.TextField(primary_key=True)
        address = peewee.TextField()
        # DOUBLE PRECISION: PostgreSQL's REAL (FloatField) would round epoch seconds to
        # minutes.
        lease_until = peewee.DoubleField()
        renewed = peewee.TextField()  # ISO 8601, UTC: the last registration or renewal
        taken_by = peewee.TextField(null=True)  # the front end ending this one's containers

        class Meta:
            table_name = "front_ends"

    class Capacity(Base):
        # How many containers each front end holds on each hypervisor host, so that the
        # front ends sharing a host keep under its max_containers together.
        host = peewee.TextField()
        front_end = peewee.TextField()
        used = peewee.IntegerField(default=0)

        class Meta:
            table_name = "capacity"
            primary_key = peewee.CompositeKey("host", "front_end")

    models = Models(
        Transition, Entity, Credential, HostKey, JournalFact, HostState, FrontEnd, Capacity
    )
    database.bind(models.all(), bind_refs=False, bind_backrefs=False)
    return models
