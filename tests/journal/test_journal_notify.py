"""PostgreSQL's LISTEN/NOTIFY between front ends (journal/notify.py): a notification sent
through one Journal reaches a Listener, and still does after the listener's connection was
cut. Against a real server (tests/pgserver.py)."""

from __future__ import annotations

import threading
import time

import pytest

from anweddol_actors.journal import Journal, JournalError
from anweddol_actors.journal.notify import Listener, channel_of

_WAIT = 30.0  # seconds: bound on waiting for a notification or a backend


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?")[0]


def _listener_backends(pg_server, url: str) -> list[int]:
    """The PIDs of the backends whose last statement was a LISTEN: the listeners'."""
    rows = pg_server.admin(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND query LIKE 'LISTEN %'",
        database=_database(url),
    )
    return [row[0] for row in rows]


def _receive(listener: Listener, wanted: tuple[str, str], send=None) -> list[tuple[str, str]]:
    """Wait (bounded) until ``wanted`` arrives, calling ``send()`` before each wait if
    given; everything received, in order."""
    received: list[tuple[str, str]] = []
    deadline = time.monotonic() + _WAIT
    while wanted not in received:
        assert time.monotonic() < deadline, f"{wanted} did not arrive; got {received}"
        if send is not None:
            send()
        received += listener.wait(0.5)
    return received


def test_channel_names():
    assert channel_of("one") == "anweddol.one"
    assert channel_of("x" * 48) == "anweddol." + "x" * 48  # 57 bytes: within PostgreSQL's 63
    for bad in ("", "a b", "x" * 49, 'a"b'):
        with pytest.raises(JournalError, match="front end name"):
            channel_of(bad)


def test_a_notification_reaches_the_listener_of_its_channel_only(pg_url):
    # A name that needs quoting as an identifier: capitals, a dot, a dash.
    mine, other = channel_of("Front-1.a"), channel_of("b")
    with Journal(pg_url, front_end="b") as journal, Listener(pg_url, [mine]) as listener:
        assert listener.wait(0) == []
        journal.notify(other, "not for me")
        journal.notify(mine, "destroy c1")
        journal.notify(mine, "")
        # Notifications of one sender arrive in order: "not for me", sent first, would
        # have come before the others.
        received = _receive(listener, (mine, ""))
        assert received == [(mine, "destroy c1"), (mine, "")]


def test_a_listener_listens_again_after_its_connection_was_cut(pg_server, pg_url, caplog):
    channel = channel_of("a")
    with Journal(pg_url, front_end="b") as journal, Listener(pg_url, [channel]) as listener:
        journal.notify(channel, "before")
        assert _receive(listener, (channel, "before")) == [(channel, "before")]
        [pid] = _listener_backends(pg_server, pg_url)
        pg_server.admin(f"SELECT pg_terminate_backend({pid})", database=_database(pg_url))
        # A notification sent while the listener is away is lost (PostgreSQL keeps none):
        # so send until one arrives, each after the listener's next wait.
        with caplog.at_level("INFO", logger="anweddol_actors.journal.notify"):
            _receive(listener, (channel, "after"), send=lambda: journal.notify(channel, "after"))
        assert listener.reconnections == 1
        assert _listener_backends(pg_server, pg_url) not in ([], [pid])
    lost = [record for record in caplog.records if "lost" in record.getMessage()]
    assert len(lost) == 1 and lost[0].levelname == "WARNING"
    assert "connected again" in caplog.text
    assert _listener_backends(pg_server, pg_url) == []  # closed: its connection too


def test_close_wakes_a_wait_in_another_thread(pg_url):
    listener = Listener(pg_url, [channel_of("a")])
    waited: list = []
    thread = threading.Thread(target=lambda: waited.append(listener.wait(3600)))
    thread.start()
    try:
        # The wait is under way once it holds the lock (it does until it returns).
        deadline = time.monotonic() + _WAIT
        while not listener._lock.locked():
            assert time.monotonic() < deadline, "the wait did not start"
            time.sleep(0.01)
    finally:
        listener.close()
    thread.join(timeout=_WAIT)
    assert not thread.is_alive() and waited == [[]]
    with pytest.raises(JournalError, match="closed"):
        listener.wait(0)
    listener.close()  # twice is fine


def test_notifications_need_postgresql(tmp_path, pg_url):
    with Journal(tmp_path / "j.sqlite3", front_end="a") as journal:
        with pytest.raises(JournalError, match="need a PostgreSQL journal"):
            journal.notify(channel_of("b"), "x")
    with pytest.raises(JournalError, match="need a PostgreSQL journal"):
        Listener(str(tmp_path / "j.sqlite3"), [channel_of("a")])
    with pytest.raises(JournalError, match="no channel"):
        Listener(pg_url, [])
    with pytest.raises(JournalError, match="must be 1 to 63 bytes"):
        Listener(pg_url, ["x" * 64])
    unreachable = pg_url.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(JournalError, match="cannot listen on"):
        Listener(unreachable, [channel_of("a")])


def test_a_listener_that_cannot_connect_again_waits_and_tries_at_the_next_wait(
    pg_server, pg_url, caplog
):
    channel, database = channel_of("a"), _database(pg_url)
    with Journal(pg_url, front_end="b") as journal, Listener(pg_url, [channel]) as listener:
        # The database refuses new connections of the journal's role (the journal keeps
        # its own, already open), and the listener's is cut.
        pg_server.admin(f'REVOKE CONNECT ON DATABASE "{database}" FROM PUBLIC, anweddol')
        try:
            [pid] = _listener_backends(pg_server, pg_url)
            pg_server.admin(f"SELECT pg_terminate_backend({pid})", database=database)
            with caplog.at_level("DEBUG", logger="anweddol_actors.journal.notify"):
                journal.notify(channel, "lost")
                # The loss, then failed attempts: each wait returns, with nothing.
                seen = listener.wait(0.2) + listener.wait(0.2) + listener.wait(0.2)
                attempts = [r for r in caplog.records if "cannot connect again" in r.getMessage()]
        finally:
            pg_server.admin(f'GRANT CONNECT ON DATABASE "{database}" TO anweddol')
        assert seen in ([], [(channel, "lost")])  # it may have come before the cut
        assert len(attempts) >= 1 and listener.reconnections == 0
        _receive(listener, (channel, "back"), send=lambda: journal.notify(channel, "back"))
        assert listener.reconnections == 1
    warnings = [record for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and "lost" in warnings[0].getMessage()
