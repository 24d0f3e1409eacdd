"""The journal on PostgreSQL: unsynced commits, a server connection that goes away, a
statement that takes too long. Against a real server (tests/pgserver.py)."""

from __future__ import annotations

import threading
import time

import pytest

from anweddol_actors.journal import Journal, JournalError
from anweddol_actors.lifecycle import Lifecycle

_WAIT = 30.0  # seconds: bound on waiting for the journal's backend to reach a state


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?")[0]


def _journal_backends(pg_server, url: str, wait_event: str | None = None) -> list[int]:
    """The PIDs of the journal's backends (the test's own admin connection excluded)."""
    condition = f"AND wait_event = '{wait_event}'" if wait_event else ""
    rows = pg_server.admin(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        f"AND application_name = 'anweddol_actors' AND pid <> pg_backend_pid() {condition}",
        database=_database(url),
    )
    return [row[0] for row in rows]


def _terminate(pg_server, url: str, wait_event: str | None = None) -> None:
    """Terminate the journal's backend, once it is there (in ``wait_event`` if given)."""
    deadline = time.monotonic() + _WAIT
    while not (pids := _journal_backends(pg_server, url, wait_event)):
        assert time.monotonic() < deadline, f"no journal backend in {wait_event} after {_WAIT} s"
        time.sleep(0.05)
    assert len(pids) == 1, pids  # one connection per journal
    pg_server.admin(f"SELECT pg_terminate_backend({pids[0]})", database=_database(url))


def test_an_unsynced_commit_skips_the_flush_in_its_own_transaction_only(pg_server, pg_url):
    with Journal(pg_url) as journal:
        # What each transition's transaction ran with, seen from inside it by a trigger.
        pg_server.admin(
            "CREATE TABLE seen (id integer, synchronous_commit text)",
            "CREATE FUNCTION remember() RETURNS trigger AS $$ BEGIN INSERT INTO seen VALUES"
            " (NEW.id, current_setting('synchronous_commit')); RETURN NEW; END $$"
            " LANGUAGE plpgsql",
            "CREATE TRIGGER remember AFTER INSERT ON transitions FOR EACH ROW"
            " EXECUTE FUNCTION remember()",
            "GRANT ALL ON seen TO anweddol",
            database=_database(pg_url),
        )
        session = Lifecycle("session", "s1", journal, synced=False)
        session.fire("start")
        Lifecycle("container", "c1", journal).fire("start")
        journal.record_many(
            [
                {"kind": "session", "entity_id": "s2", "trigger": "start", "source": "created",
                 "dest": "started"},
                {"kind": "session", "entity_id": "s2", "trigger": "fail", "source": "started",
                 "dest": "failed"},
            ],
            sync=False,
        )  # fmt: skip
        journal.store_credentials("c1", "token")
        journal.record(kind="server", entity_id="x", trigger="start", source="a", dest="b")
        seen = pg_server.admin(
            "SELECT id, synchronous_commit FROM seen ORDER BY id", database=_database(pg_url)
        )
        assert seen == [(1, "off"), (2, "on"), (3, "off"), (4, "off"), (5, "on")]
        assert [row["entity_id"] for row in journal.history()] == ["s1", "c1", "s2", "s2", "x"]
        assert journal.entity("s2")["state"] == "failed"
        assert journal.commits == 5


def test_a_terminated_connection_fails_one_call_and_the_next_reconnects(pg_server, pg_url):
    with Journal(pg_url) as journal:
        journal.record(kind="forwarder", entity_id="f1", trigger="start", source="a", dest="b")
        _terminate(pg_server, pg_url)
        with pytest.raises(JournalError) as info:
            journal.record(kind="forwarder", entity_id="f1", trigger="stop", source="b", dest="c")
        assert "\n" not in str(info.value)
        assert "cannot record a transition" in str(info.value)
        # The next call opens a new connection; the failed write left nothing behind.
        assert [row["trigger"] for row in journal.history()] == ["start"]
        journal.record(kind="forwarder", entity_id="f1", trigger="stop", source="b", dest="c")
        assert journal.entity("f1")["state"] == "c"
        # A read meets a dropped connection as a write does.
        _terminate(pg_server, pg_url)
        with pytest.raises(JournalError, match="cannot read the history"):
            journal.history()
        assert len(journal.history()) == 2


def test_a_connection_terminated_mid_transaction_leaves_no_half_transition(pg_server, pg_url):
    with Journal(pg_url) as journal:
        lifecycle = Lifecycle("forwarder", "f1", journal, data={"port": 6150})
        lifecycle.fire("start")
        # The "stop" stalls after both its rows are written, before the commit.
        pg_server.admin(
            "CREATE FUNCTION stall() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(60);"
            " RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER stall AFTER INSERT OR UPDATE ON entities FOR EACH ROW"
            " WHEN (NEW.state = 'stopped') EXECUTE FUNCTION stall()",
            database=_database(pg_url),
        )
        errors: list[BaseException] = []

        def stop() -> None:
            try:
                lifecycle.fire("stop", data={"port": None})
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        writer = threading.Thread(target=stop)
        writer.start()
        _terminate(pg_server, pg_url, wait_event="PgSleep")
        writer.join(timeout=_WAIT)
        assert not writer.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], JournalError), errors
        assert lifecycle.state == "started"  # the machine did not move either
        assert [row["trigger"] for row in journal.history()] == ["start"]
        assert journal.entity("f1")["state"] == "started"
        assert journal.entity("f1")["data"] == {"port": 6150}


def test_a_statement_that_takes_too_long_is_cut_by_statement_timeout(pg_server, pg_url):
    pg_server.admin(
        "CREATE FUNCTION slow() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(30);"
        " RETURN NEW; END $$ LANGUAGE plpgsql",
        database=_database(pg_url),
    )
    with Journal(pg_url + "?options=-c%20statement_timeout%3D300") as journal:
        pg_server.admin(
            "CREATE TRIGGER slow AFTER INSERT ON credentials FOR EACH ROW EXECUTE FUNCTION slow()",
            database=_database(pg_url),
        )
        with pytest.raises(JournalError, match="statement timeout"):
            journal.store_credentials("c1", "token")
        assert not journal.has_credentials("c1")  # rolled back; the connection still works


def test_an_unreachable_server_is_a_journal_error(pg_server):
    # Nothing listens there (the port the test server does not use, on another loopback
    # address): refused at once, one line.
    url = f"postgresql://anweddol@127.0.0.3:{pg_server.port}/journal?connect_timeout=5"
    with pytest.raises(JournalError, match="cannot open journal") as info:
        Journal(url)
    assert "\n" not in str(info.value)


def test_the_password_is_never_shown(pg_server, pg_url):
    with Journal(pg_url) as journal:
        assert pg_server.role_password not in journal.path
        assert ":***@" in journal.path
    wrong = pg_url.replace(pg_server.role_password, "wrong-password")
    with pytest.raises(JournalError, match="password authentication failed") as info:
        Journal(wrong)
    assert "wrong-password" not in str(info.value)


def test_serve_with_an_unreachable_postgresql_journal_is_a_one_line_error(pg_server, tmp_path):
    import subprocess
    import sys

    from tests.commands import write_test_driver_config

    config = write_test_driver_config(tmp_path)
    url = f"postgresql://anweddol:secret@127.0.0.3:{pg_server.port}/journal?connect_timeout=5"
    command = [sys.executable, "-m", "anweddol_actors", "serve", "-c", str(config)]
    done = subprocess.run(
        [*command, "--port", "0", "--database", url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot open journal postgresql://anweddol:***@127.0.0.3")
    assert "Traceback" not in done.stderr and "secret" not in done.stderr
