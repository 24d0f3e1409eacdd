"""The server id: created once and kept in the journal, the mark on the server's domains;
a journal of the previous version keeps the hostname-derived mark its domains carry."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
from datetime import UTC, datetime, timedelta

from anweddol_actors.engine.supervisor import owner_of
from anweddol_actors.journal import Journal


def test_a_new_journal_file_keeps_one_random_id(tmp_path):
    path = tmp_path / "journal.sqlite3"
    with Journal(path) as journal:
        first = owner_of(journal)
        assert owner_of(journal) == first
    with Journal(path) as journal:
        assert owner_of(journal) == first
    # Not derived from where it runs: another file on the same host gets another id.
    with Journal(tmp_path / "other.sqlite3") as other:
        assert owner_of(other) != first
    row = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key='server_id'")
    assert row.fetchone() == (first,)


def test_a_postgresql_journal_keeps_one_random_id(pg_url):
    with Journal(pg_url) as journal:
        first = owner_of(journal)
        journal.record(kind="container", entity_id="c", trigger="start", source="a", dest="b")
    with Journal(pg_url) as journal:
        assert owner_of(journal) == first


def test_in_memory_journals_never_share_an_id():
    with Journal(":memory:") as one, Journal(":memory:") as two:
        assert owner_of(one) != owner_of(two)
        assert owner_of(one) == owner_of(one)


def _previous_version_journal(path):
    """A journal as the previous version left it: no meta table, some history."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE transitions (id INTEGER PRIMARY KEY, time TEXT, kind TEXT,
            entity_id TEXT, trigger TEXT, source TEXT, dest TEXT, context INTEGER,
            details TEXT);
        CREATE TABLE entities (kind TEXT, entity_id TEXT, state TEXT, terminal INTEGER,
            data TEXT, updated TEXT, PRIMARY KEY (kind, entity_id));
        CREATE TABLE credentials (uuid_sha256 TEXT PRIMARY KEY, token_sha256 TEXT,
            created TEXT);
        INSERT INTO transitions VALUES (1, '2026-01-01T00:00:00.000000+00:00', 'container',
            'c1', 'create', 'initial', 'created', 0, NULL);
        """
    )
    db.commit()
    db.close()


def test_after_upgrade_the_old_mark_is_kept(tmp_path, monkeypatch):
    path = tmp_path / "old.sqlite3"
    _previous_version_journal(path)
    where = f"{socket.gethostname()}:{os.path.realpath(path)}"
    old_mark = hashlib.sha256(where.encode()).hexdigest()[:16]
    with Journal(path) as journal:
        assert owner_of(journal) == old_mark
        assert journal.history()[0]["entity_id"] == "c1"  # history untouched
    # Stored: a later hostname change no longer changes it.
    monkeypatch.setattr(socket, "gethostname", lambda: "renamed-host")
    with Journal(path) as journal:
        assert owner_of(journal) == old_mark


def test_host_keys_are_pruned_with_their_container(store_url):
    with Journal(store_url) as journal:
        for uuid, terminal in (("gone", True), ("alive", False)):
            journal.record(
                kind="container",
                entity_id=uuid,
                trigger="destroy" if terminal else "create",
                source="x",
                dest="destroyed" if terminal else "created",
                terminal=terminal,
            )
            journal.record_host_key(uuid, f"ssh-ed25519 KEY-{uuid}")
        assert journal.prune(datetime.now(UTC) + timedelta(seconds=1)) == 1
        assert journal.host_key("gone") is None
        assert journal.host_key("alive") == "ssh-ed25519 KEY-alive"
        journal.record_host_key("alive", "ssh-ed25519 OTHER")  # recorded again: replaced
        assert journal.host_key("alive") == "ssh-ed25519 OTHER"
