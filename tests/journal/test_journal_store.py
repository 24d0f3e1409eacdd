"""Journal storage: opening, queries, filters, durability settings.

Tests taking ``store_url`` run on a SQLite file and on a database of a real PostgreSQL
server (tests/pgserver.py)."""

import sqlite3

import pytest

from anweddol_actors.journal import Journal, JournalError, database_path


def _record(journal, kind, entity_id, trigger, source, dest, **extra):
    return journal.record(
        kind=kind, entity_id=entity_id, trigger=trigger, source=source, dest=dest, **extra
    )


@pytest.mark.parametrize(
    ("url", "path"),
    [
        (":memory:", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("/var/lib/x.sqlite3", "/var/lib/x.sqlite3"),
        ("sqlite:////var/lib/x.sqlite3", "/var/lib/x.sqlite3"),
        ("sqlite:///relative/x.sqlite3", "relative/x.sqlite3"),
        ("journal.sqlite3", "journal.sqlite3"),
        # No file: the journal is a PostgreSQL database.
        ("postgresql://anweddol@127.0.0.1:5432/journal", None),
        ("postgres://anweddol:secret@db.example/journal?sslmode=require", None),
    ],
)
def test_database_path_accepts_paths_and_sqlite_and_postgresql_urls(url, path):
    assert database_path(url) == path


@pytest.mark.parametrize(
    "url",
    [
        "mysql://db/journal",
        "sqlite:relative",
        "",
        "sqlite:///",
        "postgresql://db",
        "postgresql://db/",
        "postgresql://db:port/journal",
    ],
)
def test_database_path_refuses_the_rest(url):
    with pytest.raises(JournalError):
        database_path(url)


def test_file_journal_creates_its_folder_and_uses_wal(tmp_path):
    path = tmp_path / "deep" / "er" / "journal.sqlite3"
    with Journal(f"sqlite:///{path}") as journal:
        _record(journal, "server", "s", "start", "created", "started")
    assert path.is_file()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"transitions", "entities", "credentials"} <= tables


def test_missing_file_is_an_error_only_when_asked(tmp_path):
    with pytest.raises(JournalError, match="not found"):
        Journal(tmp_path / "absent.sqlite3", create=False)
    assert not (tmp_path / "absent.sqlite3").exists()


def test_unwritable_folder_is_a_journal_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(JournalError, match="cannot"):
        Journal(blocker / "journal.sqlite3")


def test_history_is_oldest_first_and_filters(store_url):
    with Journal(store_url) as journal:
        _record(journal, "container", "c", "start", "created", "started_booting", context=3)
        _record(journal, "forwarder", "c", "start", "created", "started")
        _record(journal, "session", 9, "start", "created", "started_handshaking")
        _record(journal, "container", "c", "administer", "started_booting", "started_administered")

    with Journal(store_url, create=False) as journal:  # durable across opens
        rows = journal.history()
        assert [row["id"] for row in rows] == [1, 2, 3, 4]
        assert [row["time"] for row in rows] == sorted(row["time"] for row in rows)
        assert set(rows[0]) == {
            "id", "time", "kind", "entity_id", "trigger", "source", "dest", "context", "details"
        }  # fmt: skip
        assert rows[0]["context"] == 3
        assert [row["id"] for row in journal.history(entity_id="c")] == [1, 2, 4]
        assert [row["id"] for row in journal.history(kind="container")] == [1, 4]
        assert [row["id"] for row in journal.history(entity_id="c", kind="forwarder")] == [2]
        assert [row["entity_id"] for row in journal.history(entity_id=9)] == ["9"]


def test_entity_rows_and_live_entities(store_url):
    with Journal(store_url) as journal:
        _record(journal, "container", "c", "start", "created", "started_booting", data={"a": 1})
        _record(journal, "forwarder", "c", "destroy", "created", "destroyed", terminal=True)
        _record(journal, "session", "s", "start", "created", "started_handshaking")
        assert journal.entity("s") == {
            "kind": "session",
            "entity_id": "s",
            "state": "started_handshaking",
            "data": {},
            "updated": journal.history("s")[0]["time"],
            "owner": "",  # the unnamed single front end's
        }
        assert journal.entity("nobody") is None
        with pytest.raises(JournalError, match="several kinds"):
            journal.entity("c")
        assert journal.entity("c", kind="container")["data"] == {"a": 1}
        live = [(row["kind"], row["entity_id"]) for row in journal.live_entities()]
        assert live == [("container", "c"), ("session", "s")]
        assert [row["entity_id"] for row in journal.live_entities(kind="session")] == ["s"]


def test_details_keep_json_types(store_url):
    details = {"ports": [6150, 6151], "nested": {"ok": True}, "none": None, "text": "é"}
    with Journal(store_url) as journal:
        _record(journal, "server", "s", "start", "created", "started", details=details)
        assert journal.history()[0]["details"] == details


def test_closed_journal_raises_journal_error(store_url):
    for journal in (Journal(":memory:"), Journal(store_url)):
        journal.close()
        with pytest.raises(JournalError, match="closed"):
            journal.history()


def test_prune_forgets_only_ended_entities_older_than_the_cutoff(store_url):
    from datetime import UTC, datetime, timedelta

    from anweddol_actors.lifecycle import Lifecycle, replay

    journal = Journal(store_url)
    ended = Lifecycle("session", "old", journal)
    for trigger in ("start", "handshake", "request", "close", "destroy"):
        ended.fire(trigger)
    live = Lifecycle("container", "alive", journal)
    live.fire("start")
    assert journal.prune(datetime.now(UTC) - timedelta(days=1)) == 0  # too recent
    assert journal.prune(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert journal.history(entity_id="old") == [] and journal.entity("old") is None
    assert replay("container", journal.history(entity_id="alive")) == "started_booting"
    assert [row["entity_id"] for row in journal.live_entities()] == ["alive"]
    journal.close()


def test_prune_from_the_command_line(store_url):
    import json
    import subprocess
    import sys

    from anweddol_actors.lifecycle import Lifecycle

    path = store_url  # the command line takes a PostgreSQL URL as it takes a file
    with Journal(path) as journal:
        lifecycle = Lifecycle("forwarder", "f1", journal)
        lifecycle.fire("destroy")
    command = [sys.executable, "-m", "anweddol_actors", "journal", "--db", str(path), "--json"]
    kept = subprocess.run([*command, "--prune-days", "1"], capture_output=True, text=True)
    assert json.loads(kept.stdout)["data"] == {"pruned_entities": 0}
    gone = subprocess.run([*command, "--prune-days", "0"], capture_output=True, text=True)
    assert json.loads(gone.stdout)["data"] == {"pruned_entities": 1}
    bad = subprocess.run([*command, "--prune-days", "-3"], capture_output=True, text=True)
    assert bad.returncode == 2 and "negative" in bad.stderr
