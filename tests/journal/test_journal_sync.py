"""Synced and unsynced commits: a client session's rows skip the fsync
(``synchronous=NORMAL`` in WAL) and still survive the server process being killed; every
other commit stays synced (``synchronous=FULL``)."""

import signal
import textwrap

from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle
from tests.commands import kill_at_marker

# SQLite's numbers for the levels.
NORMAL, FULL = 1, 2


def _level(journal: Journal) -> int:
    # The journal's own connection (a private attribute): the level is per connection.
    return journal._db.connection().execute("PRAGMA synchronous").fetchone()[0]


def test_a_commit_is_synced_unless_asked_otherwise(tmp_path):
    with Journal(tmp_path / "journal.sqlite3") as journal:
        assert _level(journal) == FULL
        row = {"kind": "session", "entity_id": "s", "trigger": "start"}
        journal.record_many([{**row, "source": "created", "dest": "started"}], sync=False)
        assert _level(journal) == NORMAL
        journal.record(kind="container", entity_id="c", trigger="start", source="a", dest="b")
        assert _level(journal) == FULL
        journal.store_credentials("c", "token")  # any other write is synced too
        assert _level(journal) == FULL


def test_session_lifecycles_commit_unsynced_and_others_synced(tmp_path):
    with Journal(tmp_path / "journal.sqlite3") as journal:
        session = Lifecycle("session", "s1", journal, synced=False)
        session.fire("start")
        assert _level(journal) == NORMAL
        Lifecycle("container", "c1", journal).fire("start")
        assert _level(journal) == FULL
        assert [row["entity_id"] for row in journal.history()] == ["s1", "c1"]


CHILD = textwrap.dedent(
    """
    import pathlib, sys, time
    from anweddol_actors.journal import Journal
    from anweddol_actors.lifecycle import Lifecycle

    db, marker = sys.argv[1:]
    journal = Journal(db)
    session = Lifecycle("session", "s1", journal, deferred=True, synced=False)
    session.fire("start")
    session.fire("handshake")
    session.make_durable()
    session.fire("request", details={"verb": "STAT"})
    pathlib.Path(marker).write_text("committed")
    time.sleep(120)
    """
)


def test_unsynced_rows_survive_a_killed_server(tmp_path):
    db = tmp_path / "journal.sqlite3"
    marker = tmp_path / "committed"
    status = kill_at_marker(CHILD, str(db), str(marker), marker=marker, what="its commit")
    assert status == -signal.SIGKILL
    with Journal(db, create=False) as journal:
        assert [row["trigger"] for row in journal.history()] == ["start", "handshake", "request"]
        assert journal.entity("s1")["state"] == "started_handling"
