"""Lifecycle behaviour around the edges: errors, data, resume, replay, failed writes, the
create step and the Transition records fire returns."""

import dataclasses
import sqlite3

import pytest

from anweddol_actors.journal import Journal, JournalError
from anweddol_actors.lifecycle import SPECS, IllegalTransition, Lifecycle, Transition, replay


@pytest.fixture
def journal():
    with Journal(":memory:") as journal:
        yield journal


def test_illegal_transition_names_everything_needed(journal):
    lifecycle = Lifecycle("session", 42, journal)
    lifecycle.fire("start")
    with pytest.raises(IllegalTransition) as caught:
        lifecycle.fire("request")
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.kind, error.entity_id, error.trigger, error.state) == (
        "session",
        "42",
        "request",
        "started_handshaking",
    )
    assert error.allowed == ("handshake", "close", "fail")
    assert str(error) == (
        "session 42: trigger 'request' is not allowed in state 'started_handshaking'"
        " (allowed: handshake, close, fail)"
    )


def test_terminal_state_error_says_nothing_is_allowed(journal):
    lifecycle = Lifecycle("forwarder", "f", journal)
    lifecycle.fire("destroy")
    assert lifecycle.is_terminal
    with pytest.raises(IllegalTransition, match=r"\(allowed: none\)"):
        lifecycle.fire("start")


def test_unknown_trigger_and_kind(journal):
    lifecycle = Lifecycle("server", "s", journal)
    with pytest.raises(IllegalTransition, match="'explode'"):
        lifecycle.fire("explode")
    with pytest.raises(ValueError, match="unknown entity kind 'vm'"):
        Lifecycle("vm", "x", journal)
    with pytest.raises(ValueError, match="not a state"):
        Lifecycle("server", "x", journal, state="started_ready")
    assert journal.history() == []


def test_data_is_merged_and_recorded_with_the_state(journal):
    lifecycle = Lifecycle("container", "c1", journal, data={"memory": 256})
    lifecycle.fire("start", data={"domain": "d-1"}, details={"why": "create"}, context=7)
    lifecycle.fire("administer", data={"memory": 512})
    assert lifecycle.data == {"memory": 512, "domain": "d-1"}
    assert journal.entity("c1")["data"] == {"memory": 512, "domain": "d-1"}
    first = journal.history("c1")[0]
    assert (first["context"], first["details"]) == (7, {"why": "create"})
    assert lifecycle.is_in("started") and not lifecycle.is_in("stopped")


def test_resume_continues_from_the_journal(journal):
    original = Lifecycle("session", "s1", journal, data={"peer": "127.0.0.1"})
    original.fire("start")
    original.fire("handshake")
    resumed = Lifecycle.resume(journal, "s1")
    assert (resumed.kind, resumed.state, resumed.data) == (
        "session",
        "started_ready",
        {"peer": "127.0.0.1"},
    )
    resumed.fire("request")
    assert replay("session", journal.history("s1")) == "started_handling"
    with pytest.raises(LookupError):
        Lifecycle.resume(journal, "nobody")


def test_replay_refuses_a_journal_the_machine_cannot_produce(journal):
    lifecycle = Lifecycle("server", "s", journal)
    lifecycle.fire("start")
    lifecycle.fire("stop")
    rows = journal.history()
    assert replay("server", []) == "created"
    assert replay("server", rows) == "stopped"
    with pytest.raises(ValueError, match="source"):
        replay("server", rows[1:])
    with pytest.raises(ValueError, match="kind"):
        replay("forwarder", rows)
    with pytest.raises(ValueError, match="dest"):
        replay("server", [rows[0] | {"dest": "stopped"}])
    with pytest.raises(ValueError, match="entity"):
        replay("server", [rows[0], rows[1] | {"entity_id": "other"}])


def test_interrupted_transaction_leaves_neither_row_nor_state(tmp_path):
    """The entity-row write fails inside the transaction: the transition row goes too."""
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path)
    lifecycle = Lifecycle("container", "c1", journal)
    lifecycle.fire("start", data={"domain": "d"})
    # A real SQLite failure on the second statement of the transaction (the upsert of the
    # row "start" inserted: an UPDATE), injected from another connection as an
    # administrator could.
    admin = sqlite3.connect(path)
    admin.execute(
        "CREATE TRIGGER refuse AFTER UPDATE ON entities WHEN NEW.state = 'stopped'"
        " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
    )
    admin.commit()

    with pytest.raises(JournalError, match="injected failure"):
        lifecycle.fire("stop", data={"domain": None})

    assert lifecycle.state == "started_booting"
    assert lifecycle.data == {"domain": "d"}
    assert [row["dest"] for row in journal.history()] == ["started_booting"]
    assert journal.entity("c1")["state"] == "started_booting"
    assert admin.execute("SELECT count(*) FROM transitions").fetchone() == (1,)

    admin.execute("DROP TRIGGER refuse")
    admin.commit()
    admin.close()
    assert lifecycle.fire("stop").dest == "stopped"
    assert replay("container", journal.history("c1")) == "stopped"
    journal.close()


def test_closed_journal_refuses_and_state_stays(tmp_path):
    journal = Journal(tmp_path / "j.sqlite3")
    lifecycle = Lifecycle("forwarder", "f", journal)
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        lifecycle.fire("start")
    assert lifecycle.state == "created"


def _shortest_paths(spec):
    """Trigger sequence from the initial state to every reachable leaf (breadth first)."""
    paths = {spec.initial: []}
    frontier = [spec.initial]
    table = spec.leaf_edges()
    while frontier:
        state = frontier.pop(0)
        for (source, trigger), dest in table.items():
            if source == state and dest not in paths:
                paths[dest] = [*paths[state], trigger]
                frontier.append(dest)
    return paths


@pytest.mark.parametrize("kind", SPECS)
def test_every_edge_is_reachable_and_journalled(kind, journal):
    """Complements the random walk: each edge once, reached from `created` through fire."""
    spec = SPECS[kind]
    paths = _shortest_paths(spec)
    assert set(paths) == set(spec.leaves), "every state is reachable from the initial one"
    for n, ((source, trigger), dest) in enumerate(sorted(spec.leaf_edges().items())):
        lifecycle = Lifecycle(kind, f"{kind}-{n}", journal)
        for step in paths[source]:
            lifecycle.fire(step)
        assert lifecycle.state == source
        assert lifecycle.fire(trigger, details={"edge": n}).dest == dest
        rows = journal.history(entity_id=lifecycle.entity_id)
        assert len(rows) == len(paths[source]) + 1
        assert (rows[-1]["source"], rows[-1]["trigger"], rows[-1]["dest"]) == (
            source,
            trigger,
            dest,
        )
        assert replay(kind, rows) == dest
        assert journal.entity(lifecycle.entity_id)["state"] == dest


def test_fire_returns_the_transition_it_journalled(journal):
    lifecycle = Lifecycle("container", "c1", journal)
    details = {"why": "boot"}
    transition = lifecycle.fire("start", context=7, details=details, data={"domain": "d"})
    assert transition == Transition(
        kind="container",
        entity_id="c1",
        trigger="start",
        source="created",
        dest="started_booting",
        context=7,
        details={"why": "boot"},
    )
    row = journal.history("c1")[0]
    assert {field: row[field] for field in ("kind", "entity_id", "trigger", "source", "dest",
            "context", "details")} == dataclasses.asdict(transition)  # fmt: skip
    # The record is the journal's, not the caller's: later edits of either do not leak in.
    details["why"] = "changed"
    assert transition.details == {"why": "boot"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        transition.dest = "stopped"
    assert lifecycle.fire("administer").details is None


@pytest.mark.parametrize("kind", SPECS)
def test_create_journals_the_birth_once(kind, journal):
    lifecycle = Lifecycle(kind, "e1", journal, data={"a": 1})
    assert lifecycle.can("create")
    assert lifecycle.allowed_triggers[0] == "create"
    transition = lifecycle.create(context=3, details={"by": "test"}, data={"b": 2})
    assert transition == Transition(kind, "e1", "create", "", "created", 3, {"by": "test"})
    assert lifecycle.state == "created"
    assert lifecycle.data == {"a": 1, "b": 2}
    rows = journal.history("e1")
    assert [(r["trigger"], r["source"], r["dest"], r["context"]) for r in rows] == [
        ("create", "", "created", 3)
    ]
    assert journal.entity("e1") | {"updated": None} == {
        "kind": kind,
        "entity_id": "e1",
        "state": "created",
        "data": {"a": 1, "b": 2},
        "updated": None,
        "owner": "",  # the unnamed single front end's
    }
    assert [row["entity_id"] for row in journal.live_entities()] == ["e1"]
    assert replay(kind, rows) == "created"

    assert not lifecycle.can("create")
    assert "create" not in lifecycle.allowed_triggers
    with pytest.raises(IllegalTransition, match="'create' is not allowed in state 'created'"):
        lifecycle.create()
    with pytest.raises(IllegalTransition):
        lifecycle.fire("create")
    assert len(journal.history("e1")) == 1

    # Its first move after the create step starts from the initial state, as without it.
    first = SPECS[kind].leaf_edges()
    trigger = next(t for (source, t) in first if source == "created")
    assert lifecycle.fire(trigger).source == "created"
    assert replay(kind, journal.history("e1")) == lifecycle.state


def test_fire_create_is_create(journal):
    transition = Lifecycle("forwarder", "f", journal).fire("create", data={"port": 1})
    assert (transition.trigger, transition.source, transition.dest) == ("create", "", "created")
    assert journal.entity("f")["data"] == {"port": 1}


def test_create_is_refused_once_anything_was_fired_or_the_state_given(journal):
    fired = Lifecycle("forwarder", "fired", journal)
    fired.fire("start")
    stopped_from_created = Lifecycle("forwarder", "destroyed", journal)
    stopped_from_created.fire("destroy")
    resumed = Lifecycle.resume(journal, "fired")
    explicit = Lifecycle("forwarder", "explicit", journal, state="created")
    for lifecycle in (fired, stopped_from_created, resumed, explicit):
        assert not lifecycle.can("create")
        before = (lifecycle.state, journal.history())
        with pytest.raises(IllegalTransition) as caught:
            lifecycle.create(data={"x": 1})
        assert caught.value.trigger == "create"
        assert (lifecycle.state, journal.history()) == before
        assert "x" not in lifecycle.data


def test_refused_or_failed_moves_leave_the_lifecycle_fresh(tmp_path):
    journal = Journal(tmp_path / "j.sqlite3")
    lifecycle = Lifecycle("session", "s", journal)
    with pytest.raises(IllegalTransition):
        lifecycle.fire("handshake")
    assert lifecycle.can("create")
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        lifecycle.create()
    # Nothing was written, so the creation is still to be journalled.
    assert lifecycle.can("create") and lifecycle.state == "created"
    with Journal(tmp_path / "j.sqlite3") as reopened:
        assert reopened.history() == []


def test_without_create_the_first_row_starts_from_created(journal):
    lifecycle = Lifecycle("server", "s", journal)
    assert lifecycle.fire("start").source == "created"
    assert [row["source"] for row in journal.history()] == ["created"]


def test_replay_takes_create_as_the_first_row_only(journal):
    lifecycle = Lifecycle("server", "s", journal)
    lifecycle.create()
    lifecycle.fire("start")
    create, start = journal.history()
    assert replay("server", [create]) == "created"
    assert replay("server", [create, start]) == "started"
    with pytest.raises(ValueError, match="first row"):
        replay("server", [create, create])
    with pytest.raises(ValueError, match="first row"):
        replay("server", [start, create])
    with pytest.raises(ValueError, match="source 'created'"):
        replay("server", [create | {"source": "created"}])
    with pytest.raises(ValueError, match="dest 'started'"):
        replay("server", [create | {"dest": "started"}])


def test_lifecycles_of_one_kind_move_apart(journal):
    """One machine per kind answers every lifecycle of it: each keeps its own state."""
    first, second = (Lifecycle("container", name, journal) for name in ("c1", "c2"))
    first.fire("start")
    assert (first.state, second.state) == ("started_booting", "created")
    assert second.can("start") and not first.can("start")
    second.fire("start")
    second.fire("administer")
    first.fire("fail")
    assert (first.state, second.state) == ("failed", "started_administered")
    assert first.allowed_triggers == ("destroy",)
    with pytest.raises(IllegalTransition):
        second.fire("destroy")
    assert second.state == "started_administered"
