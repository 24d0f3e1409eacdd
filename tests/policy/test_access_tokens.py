"""Access tokens: format, hashing at rest, enable/disable/delete, constant-time verify.

Tests taking ``store_url`` run on a SQLite file and on a database of a real PostgreSQL
server (tests/pgserver.py); the file format's own tests stay SQLite's."""

from __future__ import annotations

import hashlib
import hmac
import re
import sqlite3
import stat
import threading

import pytest

from anweddol_actors.policy import AccessTokenError, AccessTokenStore, access_tokens


@pytest.fixture
def store(store_url):
    with AccessTokenStore(store_url) as token_store:
        yield token_store


def test_tokens_are_124_url_safe_characters(store):
    tokens = {store.add()[1] for _ in range(20)}
    assert len(tokens) == 20
    for token in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]{124}", token)


def test_added_token_verifies_and_others_do_not(store):
    entry_id, token = store.add()
    assert store.verify(token)
    assert store.entry_id(token) == entry_id
    assert not store.verify(token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not store.verify(token + "x")
    assert not store.verify("")
    assert store.entry_id("nope") is None


@pytest.mark.parametrize("candidate", [None, 42, ["x"], {"a": 1}, b"bytes", "x" * 5000])
def test_non_string_or_oversized_candidates_are_refused(store, candidate):
    store.add()
    assert store.verify(candidate) is False


def test_tokens_are_hashed_at_rest(tmp_path):
    path = tmp_path / "tokens.sqlite3"
    with AccessTokenStore(path) as store:
        tokens = [store.add()[1] for _ in range(5)]
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    for token in tokens:
        assert token.encode() not in raw
        assert hashlib.sha256(token.encode()).hexdigest().encode() in raw


def test_tokens_are_hashed_at_rest_in_postgresql(pg_server, pg_url):
    with AccessTokenStore(pg_url) as store:
        tokens = [store.add()[1] for _ in range(5)]
    rows = pg_server.admin("SELECT * FROM access_tokens", database=pg_url.rsplit("/", 1)[1])
    assert len(rows) == 5
    for token in tokens:
        assert token not in repr(rows)
        assert hashlib.sha256(token.encode()).hexdigest() in repr(rows)


def test_database_file_is_owner_only(tmp_path):
    path = tmp_path / "sub" / "tokens.sqlite3"
    AccessTokenStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_disabled_tokens_fail_until_enabled(store):
    entry_id, token = store.add(disabled=True)
    assert not store.verify(token)
    assert store.entry_id(token) is None
    assert store.enable(entry_id)
    assert store.verify(token)
    assert store.disable(entry_id)
    assert not store.verify(token)


def test_delete_and_list(store):
    first, _ = store.add()
    second, token = store.add(disabled=True)
    entries = store.list()
    assert [(e.entry_id, e.enabled) for e in entries] == [(first, True), (second, False)]
    assert all(isinstance(e.creation_timestamp, int) for e in entries)
    assert not hasattr(entries[0], "access_token")
    assert store.get(second).enabled is False
    assert store.delete(second)
    assert store.get(second) is None
    assert not store.delete(second)
    assert not store.enable(second)
    assert not store.disable(second)
    assert [e.entry_id for e in store.list()] == [first]
    assert not store.verify(token)


def test_verify_compares_every_entry_without_early_exit(store, monkeypatch):
    # Timing cannot be measured reliably in a test; what makes verify constant-time can:
    # every stored hash goes through hmac.compare_digest, whether the candidate matches
    # the first entry, a disabled one, or none.
    entries = [store.add(disabled=(i == 2)) for i in range(4)]
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(access_tokens.hmac, "compare_digest", counting)
    for candidate, expected in [
        (entries[0][1], True),
        (entries[2][1], False),
        (entries[3][1], True),
        ("no such token", False),
    ]:
        calls.clear()
        assert store.verify(candidate) is expected
        assert len(calls) == 4
        assert all(len(a) == len(b) == 64 for a, b in calls)


def test_original_database_format_is_read(tmp_path):
    # A token database written the original's way (same table and columns) keeps working.
    path = tmp_path / "access_token.db"
    token = "original-token"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE AnweddolServerAccessTokenTable (EntryID INTEGER NOT NULL PRIMARY KEY, "
        "CreationTimestamp INTEGER NOT NULL, AccessToken TEXT NOT NULL, Enabled INTEGER NOT NULL)"
    )
    db.execute(
        "INSERT INTO AnweddolServerAccessTokenTable VALUES (7, 1700000000, ?, 1)",
        (hashlib.sha256(token.encode()).hexdigest(),),
    )
    db.commit()
    db.close()
    with AccessTokenStore(path) as store:
        assert store.verify(token)
        assert store.entry_id(token) == 7
        assert store.list()[0].creation_timestamp == 1700000000


def test_changes_by_another_process_apply_at_once(store_url):
    # The `token` command line and a running server hold separate connections.
    path = store_url
    with AccessTokenStore(path) as server, AccessTokenStore(path) as admin:
        entry_id, token = admin.add()
        assert server.verify(token)
        admin.disable(entry_id)
        assert not server.verify(token)


def test_concurrent_use_from_threads(store):
    entry_id, token = store.add()
    failures: list[str] = []

    def worker() -> None:
        for _ in range(50):
            if not store.verify(token):
                failures.append("verify failed")
            store.add()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(store.list()) == 1 + 8 * 50


def test_unopenable_database_is_one_line_error(tmp_path):
    (tmp_path / "plain").write_text("")
    with pytest.raises(AccessTokenError) as info:
        AccessTokenStore(tmp_path / "plain" / "tokens.sqlite3")
    assert "\n" not in str(info.value)
    assert "cannot open access token database" in str(info.value)


def test_unreachable_or_refused_postgresql_is_one_line_error(pg_server, pg_url):
    wrong = pg_url.replace(pg_server.role_password, "wrong-password")
    unreachable = f"postgresql://anweddol@127.0.0.3:{pg_server.port}/x?connect_timeout=5"
    for url, reason in ((wrong, "password authentication failed"), (unreachable, "127.0.0.3")):
        with pytest.raises(AccessTokenError) as info:
            AccessTokenStore(url)
        assert "\n" not in str(info.value)
        assert "cannot open access token database" in str(info.value)
        assert reason in str(info.value)
        assert "wrong-password" not in str(info.value)


def test_a_dropped_postgresql_connection_fails_one_call_and_the_next_reconnects(pg_server, pg_url):
    with AccessTokenStore(pg_url) as store:
        entry_id, token = store.add()
        database = pg_url.rsplit("/", 1)[1]
        pg_server.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname ="
            " current_database() AND pid <> pg_backend_pid()",
            database=database,
        )
        with pytest.raises(AccessTokenError):
            store.verify(token)
        assert store.verify(token)
        assert store.entry_id(token) == entry_id


def test_the_journal_and_the_tokens_share_one_postgresql_database(pg_url):
    from anweddol_actors.journal import Journal

    with Journal(pg_url) as journal, AccessTokenStore(pg_url) as store:
        _, token = store.add()
        journal.record(kind="server", entity_id="s", trigger="start", source="a", dest="b")
        assert store.verify(token)
        assert len(journal.history()) == 1


def test_in_memory_store():
    with AccessTokenStore(":memory:") as store:
        _, token = store.add()
        assert store.verify(token)


def test_the_token_command_line_takes_a_postgresql_url(pg_url):
    import json
    import subprocess
    import sys

    def token(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "anweddol_actors", "token", "--db", pg_url, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    added = token("add", "--json")
    assert added.returncode == 0, added.stderr
    created = json.loads(added.stdout)["data"]
    with AccessTokenStore(pg_url) as store:
        assert store.entry_id(created["access_token"]) == created["entry_id"]
    assert token("disable", str(created["entry_id"])).returncode == 0
    with AccessTokenStore(pg_url) as store:
        assert not store.verify(created["access_token"])
