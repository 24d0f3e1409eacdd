"""Credentials: only SHA-256 digests at rest, and a pair verifies only as a pair (on SQLite
and PostgreSQL)."""

import hashlib
import secrets
import uuid

import pytest

from anweddol_actors.journal import Journal


@pytest.fixture
def journal(store_url):
    with Journal(store_url) as journal:
        yield journal


def test_plain_values_never_reach_the_database_file(tmp_path):
    path = tmp_path / "journal.sqlite3"
    container_uuid = str(uuid.uuid4())
    token = secrets.token_urlsafe(64)
    with Journal(path) as journal:
        journal.store_credentials(container_uuid, token)
        assert journal.verify_credentials(container_uuid, token)
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert token.encode() not in stored
    assert container_uuid.encode() not in stored
    # ...but their digests are there, which is what makes verification possible.
    assert hashlib.sha256(token.encode()).hexdigest().encode() in stored
    assert hashlib.sha256(container_uuid.encode()).hexdigest().encode() in stored


def test_verify_needs_the_uuid_and_its_own_token(journal):
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    journal.store_credentials(first, "token-1")
    journal.store_credentials(second, "token-2")
    assert journal.verify_credentials(first, "token-1")
    assert journal.verify_credentials(second, "token-2")
    assert not journal.verify_credentials(first, "token-2")
    assert not journal.verify_credentials(second, "token-1")
    assert not journal.verify_credentials(first, "token-1 ")
    assert not journal.verify_credentials(str(uuid.uuid4()), "token-1")
    assert not journal.verify_credentials(first, "")


def test_storing_again_replaces_the_token(journal):
    journal.store_credentials("u", "old")
    journal.store_credentials("u", "new")
    assert journal.verify_credentials("u", "new")
    assert not journal.verify_credentials("u", "old")


def test_delete_forgets_and_reports(journal):
    journal.store_credentials("u", "t")
    assert journal.delete_credentials("u") is True
    assert not journal.verify_credentials("u", "t")
    assert journal.delete_credentials("u") is False


def test_plain_values_never_reach_the_postgresql_tables(pg_server, pg_url):
    container_uuid = str(uuid.uuid4())
    token = secrets.token_urlsafe(64)
    with Journal(pg_url) as journal:
        journal.store_credentials(container_uuid, token)
    database = pg_url.rsplit("/", 1)[1]
    rows = pg_server.admin("SELECT * FROM credentials", database=database)
    stored = repr(rows)
    assert token not in stored and container_uuid not in stored
    assert hashlib.sha256(token.encode()).hexdigest() in stored
