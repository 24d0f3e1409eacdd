"""Deferred lifecycles (client sessions before their first valid request): rows recorded
in order, written in one transaction with the next row once the deferral ends or at the
terminal state, never reordered; a failed write moves nothing and drops no held row."""

import pytest

from anweddol_actors.journal import Journal, JournalError
from anweddol_actors.lifecycle import Lifecycle, replay


@pytest.fixture
def journal(tmp_path):
    with Journal(tmp_path / "j.sqlite3") as journal:
        yield journal


def triggers(rows):
    return [row["trigger"] for row in rows]


def test_a_deferred_session_that_ends_writes_all_its_rows_in_one_commit(journal):
    lifecycle = Lifecycle("session", "s", journal, deferred=True)
    before = journal.commits
    for trigger in ("start", "handshake", "malformed", "close"):
        transition = lifecycle.fire(trigger)
        assert transition.dest == lifecycle.state  # the state moves at once
    assert journal.history() == [] and journal.commits == before
    assert triggers(lifecycle.held_rows) == ["start", "handshake", "malformed", "close"]
    lifecycle.fire("destroy")
    assert journal.commits == before + 1 and lifecycle.pending == 0
    rows = journal.history(entity_id="s")
    assert triggers(rows) == ["start", "handshake", "malformed", "close", "destroy"]
    assert replay("session", rows) == "destroyed"
    assert [row["time"] for row in rows] == sorted(row["time"] for row in rows)
    assert journal.entity("s")["state"] == "destroyed"
    assert journal.live_entities() == []


def test_make_durable_writes_the_held_rows_with_the_next_one_then_row_by_row(journal):
    lifecycle = Lifecycle("session", "s", journal, deferred=True)
    lifecycle.fire("start", data={"peer": "127.0.0.1"})
    lifecycle.fire("handshake")
    before = journal.commits
    lifecycle.make_durable()
    assert journal.history() == []  # nothing until the next row
    lifecycle.fire("request", details={"verb": "STAT"})
    assert journal.commits == before + 1
    assert triggers(journal.history()) == ["start", "handshake", "request"]
    assert journal.entity("s")["state"] == "started_handling"
    assert journal.entity("s")["data"] == {"peer": "127.0.0.1"}
    lifecycle.fire("close")
    assert journal.commits == before + 2


def test_a_failed_write_moves_nothing_and_loses_no_held_row(tmp_path):
    journal = Journal(tmp_path / "j.sqlite3")
    lifecycle = Lifecycle("session", "s", journal, deferred=True)
    lifecycle.fire("start")
    lifecycle.make_durable()
    journal.close()
    with pytest.raises(JournalError):
        lifecycle.fire("handshake")
    # Still in the state before the refused write, with the start row still held.
    assert lifecycle.state == "started_handshaking"
    assert triggers(lifecycle.held_rows) == ["start"]
    with Journal(tmp_path / "j.sqlite3") as reopened:
        assert reopened.history() == []


def test_an_undeferred_lifecycle_writes_each_row_in_its_own_commit(journal):
    lifecycle = Lifecycle("session", "s", journal)
    before = journal.commits
    lifecycle.fire("start")
    lifecycle.fire("handshake")
    assert journal.commits == before + 2 and not lifecycle.deferred
