"""The schema is created or migrated when a journal opens; ``schema_version`` in ``meta``
says where it stands. On SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3

import pytest

from anweddol_actors.journal import Journal, JournalError
from anweddol_actors.journal.schema import LATEST, MIGRATIONS

# What Peewee created at commit 6677dca, before the ``hosts`` table and before versioning
# (read back from sqlite_master of a journal made by that commit's models).
SCHEMA_6677DCA = """
CREATE TABLE "credentials" ("uuid_sha256" CHAR(64) NOT NULL PRIMARY KEY,
    "token_sha256" CHAR(64) NOT NULL, "created" TEXT NOT NULL);
CREATE TABLE "entities" ("kind" TEXT NOT NULL, "entity_id" TEXT NOT NULL,
    "state" TEXT NOT NULL, "terminal" INTEGER NOT NULL, "data" TEXT NOT NULL,
    "updated" TEXT NOT NULL, PRIMARY KEY ("kind", "entity_id"));
CREATE INDEX "entities_terminal" ON "entities" ("terminal");
CREATE TABLE "host_keys" ("entity_id" TEXT NOT NULL PRIMARY KEY, "key" TEXT NOT NULL,
    "recorded" TEXT NOT NULL);
CREATE TABLE "meta" ("key" TEXT NOT NULL PRIMARY KEY, "value" TEXT NOT NULL);
CREATE TABLE "transitions" ("id" INTEGER NOT NULL PRIMARY KEY, "time" TEXT NOT NULL,
    "kind" TEXT NOT NULL, "entity_id" TEXT NOT NULL, "trigger" TEXT NOT NULL,
    "source" TEXT NOT NULL, "dest" TEXT NOT NULL, "context" INTEGER, "details" TEXT);
CREATE INDEX "transitions_entity_id_id" ON "transitions" ("entity_id", "id");
CREATE INDEX "transitions_kind_id" ON "transitions" ("kind", "id");
"""

ROWS_6677DCA = """
INSERT INTO transitions VALUES (1, '2026-01-01T00:00:00.000000+00:00', 'container', 'c1',
    'start', 'created', 'started_booting', 0, '{"port": 6150}');
INSERT INTO entities VALUES ('container', 'c1', 'started_booting', 0, '{"uuid": "c1"}',
    '2026-01-01T00:00:00.000000+00:00');
INSERT INTO credentials VALUES
    ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
     'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb',
     '2026-01-01T00:00:00.000000+00:00');
INSERT INTO host_keys VALUES ('c1', 'ssh-ed25519 AAAA', '2026-01-01T00:00:00.000000+00:00');
INSERT INTO meta VALUES ('server_id', '0123456789abcdef');
"""


def _version(journal: Journal) -> int:
    # Read through the journal's own models: the fact is a row of `meta` like server_id.
    meta = journal._models.meta
    with journal._guard(write=False, what="read the schema version"):
        return int(meta.get(meta.key == "schema_version").value)


def test_migrations_are_numbered_in_order():
    assert [migration.version for migration in MIGRATIONS] == list(range(1, LATEST + 1))


def test_a_new_journal_gets_the_latest_schema(store_url):
    with Journal(store_url) as journal:
        assert _version(journal) == LATEST
        assert journal.host_enabled("alpha")  # the newest table is there
    with Journal(store_url) as journal:  # opening again changes nothing
        assert _version(journal) == LATEST


def test_a_journal_from_before_the_hosts_table_is_migrated_and_keeps_its_rows(tmp_path, caplog):
    path = tmp_path / "journal.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA_6677DCA + ROWS_6677DCA)
    old.close()
    with caplog.at_level("INFO", logger="anweddol_actors.journal.store"):
        journal = Journal(path, create=False)
    with journal:
        assert _version(journal) == LATEST
        assert [row["dest"] for row in journal.history()] == ["started_booting"]
        assert journal.history()[0]["details"] == {"port": 6150}
        assert journal.live_entities()[0]["data"] == {"uuid": "c1"}
        assert journal.host_key("c1") == "ssh-ed25519 AAAA"
        assert journal.server_id() == "0123456789abcdef"
        journal.set_host_enabled("alpha", False)
        assert not journal.host_enabled("alpha")
        journal.record(kind="container", entity_id="c1", trigger="stop", source="s", dest="x")
        assert [row["id"] for row in journal.history()] == [1, 2]
    # Only the missing migration ran, and the log says so.
    assert "schema migrated to version 1" in caplog.text
    assert f"schema migrated to version {LATEST}" in caplog.text
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        credentials = connection.execute("SELECT count(*) FROM credentials").fetchone()
    assert "hosts" in tables and credentials == (1,)


def test_a_postgresql_journal_at_version_1_gets_the_hosts_table(pg_server, pg_url):
    with Journal(pg_url) as journal:
        journal.record(kind="container", entity_id="c1", trigger="start", source="a", dest="b")
    database = pg_url.rsplit("/", 1)[1]
    # Back to what version 1 was: no hosts table.
    pg_server.admin(
        "DROP TABLE hosts",
        "UPDATE meta SET value = '1' WHERE key = 'schema_version'",
        database=database,
    )
    with Journal(pg_url) as journal:
        assert _version(journal) == LATEST
        journal.set_host_enabled("alpha", False)
        assert not journal.host_enabled("alpha")
        assert [row["entity_id"] for row in journal.history()] == ["c1"]


def test_a_journal_of_a_newer_server_is_refused_and_left_alone(store_url):
    with Journal(store_url) as journal:
        meta = journal._models.meta
        with journal._guard(write=True, what="pretend a newer server wrote it"):
            meta.update(value=str(LATEST + 1)).where(meta.key == "schema_version").execute()
    with pytest.raises(JournalError, match=f"schema version {LATEST + 1} is newer"):
        Journal(store_url)


# Version 2: 6677DCA's tables plus ``hosts`` (what migration 2 made), and its version.
SCHEMA_2 = (
    SCHEMA_6677DCA
    + """
CREATE TABLE "hosts" ("name" TEXT NOT NULL PRIMARY KEY, "enabled" INTEGER NOT NULL,
    "changed" TEXT NOT NULL);
"""
)
ROWS_2 = (
    ROWS_6677DCA
    + """
INSERT INTO meta VALUES ('schema_version', '2');
INSERT INTO hosts VALUES ('alpha', 0, '2026-01-01T00:00:00.000000+00:00');
"""
)


def _check_version_3(url, indexes: set[str]) -> None:
    """A journal just migrated from version 2 (one live container c1, alpha drained)."""
    with Journal(url) as journal, Journal(url, front_end="b") as b:
        assert _version(journal) == LATEST
        [row] = journal.live_entities()
        assert (row["entity_id"], row["owner"], row["data"]) == ("c1", "", {"uuid": "c1"})
        assert not journal.host_enabled("alpha")
        assert journal.server_id() == "0123456789abcdef"
        # The new tables are there; an old entity written by a named front end stays
        # the unnamed one's.
        b.record(kind="container", entity_id="c1", trigger="stop", source="s", dest="x")
        assert journal.entity("c1")["owner"] == "" and b.live_entities() == []
        b.register_front_end("127.0.0.2:4242", 30)
        assert b.claim_capacity("alpha", 1, 1)
        assert [row["name"] for row in journal.front_ends()] == ["b"]
        assert journal.capacity_of_others() == {"alpha": 1}
        assert [row["dest"] for row in journal.history()] == ["started_booting", "x"]
    # One index serves the live entities, of one front end or all.
    assert "entities_terminal_owner" in indexes and "entities_terminal" not in indexes


def test_a_journal_at_version_2_gets_the_front_ends_and_keeps_its_rows(tmp_path, caplog):
    path = tmp_path / "journal.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript(SCHEMA_2 + ROWS_2)
    old.close()
    with caplog.at_level("INFO", logger="anweddol_actors.journal.store"):
        Journal(path, create=False).close()
    assert "schema migrated to version 2" not in caplog.text
    assert "schema migrated to version 3 (front ends" in caplog.text
    with sqlite3.connect(path) as connection:
        indexes = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        owner = connection.execute(
            "SELECT \"notnull\", dflt_value FROM pragma_table_info('entities') WHERE name = 'owner'"
        ).fetchone()
    connection.close()
    assert owner == (1, "''")
    _check_version_3(path, indexes)


def test_a_postgresql_journal_at_version_2_gets_the_front_ends(pg_server, pg_url):
    with Journal(pg_url) as journal:
        journal.record(
            kind="container", entity_id="c1", trigger="start", source="created",
            dest="started_booting", data={"uuid": "c1"},
        )  # fmt: skip
        journal.set_host_enabled("alpha", False)
        meta = journal._models.meta
        with journal._guard(write=True, what="set the server id of the old journal"):
            meta.create(key="server_id", value="0123456789abcdef")
    database = pg_url.rsplit("/", 1)[1]
    # Back to what version 2 was: no owner, the index on "terminal", no front end tables.
    pg_server.admin(
        "ALTER TABLE entities DROP COLUMN owner",
        "DROP TABLE front_ends, capacity",
        'CREATE INDEX "entities_terminal" ON "entities" ("terminal")',
        "UPDATE meta SET value = '2' WHERE key = 'schema_version'",
        database=database,
    )
    indexes_before = pg_server.admin(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'entities'", database=database
    )
    assert ("entities_terminal_owner",) not in indexes_before
    with Journal(pg_url):
        pass
    indexes = pg_server.admin(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'entities'", database=database
    )
    owner = pg_server.admin(
        "SELECT is_nullable, column_default FROM information_schema.columns"
        " WHERE table_name = 'entities' AND column_name = 'owner'",
        database=database,
    )
    assert owner == [("NO", "''::text")]
    _check_version_3(pg_url, {row[0] for row in indexes})
