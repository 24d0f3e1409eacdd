"""Several front ends on one journal: the entities' owner, per front end server ids,
leases and takeovers, shared capacity, the hosts' drain states read again.

Each front end is a Journal object of its own (its own connection, as in its own process)
on one database: SQLite and a real PostgreSQL server (tests/pgserver.py)."""

from __future__ import annotations

import threading
import time

import pytest

from anweddol_actors.journal import MINE, Journal, JournalError

_WAIT = 30.0  # seconds: bound on waiting for a short lease to run out
_SHORT = 0.05  # seconds: a lease meant to run out at once


def _record(journal: Journal, entity_id: str, trigger: str, dest: str, **extra) -> None:
    journal.record(
        kind="container", entity_id=entity_id, trigger=trigger, source="s", dest=dest, **extra
    )


def _expire(journal: Journal, watcher: Journal, address: str = "127.0.0.9:4242") -> None:
    """Register ``journal``'s front end with a lease that runs out at once, and wait until
    ``watcher`` sees it expired (by its own clock, as a real front end would)."""
    journal.register_front_end(address, _SHORT)
    deadline = time.monotonic() + _WAIT
    while journal.front_end not in watcher.expired_front_ends():
        assert time.monotonic() < deadline, f"{journal.front_end}'s lease did not run out"
        time.sleep(_SHORT)


@pytest.fixture
def two(store_url):
    """Front ends "a" and "b" on one journal."""
    with Journal(store_url, front_end="a") as a, Journal(store_url, front_end="b") as b:
        yield a, b


# -- owner ------------------------------------------------------------------------------


def test_an_entity_keeps_the_owner_that_inserted_it(two):
    a, b = two
    _record(a, "c1", "start", "started", data={"host": "alpha"})
    # b journals transitions of a's container (a DESTROY that reached b): the row moves,
    # its owner stays.
    b.record_many(
        [
            {"kind": "container", "entity_id": "c1", "trigger": "stop", "source": "started",
             "dest": "stopped", "data": {"host": "alpha"}},
            {"kind": "container", "entity_id": "c2", "trigger": "start", "source": "created",
             "dest": "started"},
        ]
    )  # fmt: skip
    row = a.entity("c1")
    assert (row["state"], row["owner"], row["data"]) == ("stopped", "a", {"host": "alpha"})
    assert b.entity("c2")["owner"] == "b"
    _record(a, "c2", "stop", "stopped")
    assert a.entity("c2", kind="container")["owner"] == "b"
    assert [row["entity_id"] for row in b.history("c1")] == ["c1", "c1"]


def test_live_entities_are_this_front_ends_unless_asked(two, store_url):
    a, b = two
    _record(a, "a1", "start", "started")
    _record(a, "a2", "destroy", "destroyed", terminal=True)
    _record(b, "b1", "start", "started")
    with Journal(store_url) as unnamed:
        _record(unnamed, "u1", "start", "started")

        def ids(rows: list[dict]) -> list[str]:
            return sorted(row["entity_id"] for row in rows)

        assert ids(a.live_entities()) == ids(a.live_entities(owner=MINE)) == ["a1"]
        assert ids(b.live_entities(kind="container")) == ["b1"]
        assert ids(unnamed.live_entities()) == ["u1"]
        assert ids(a.live_entities(owner=None)) == ["a1", "b1", "u1"]
        assert ids(a.live_entities(owner="b")) == ["b1"]
        assert ids(b.live_entities(owner="")) == ["u1"]
        assert a.live_entities(owner="nobody") == []
        assert a.live_entities(kind="session", owner=None) == []
        assert {row["owner"] for row in a.live_entities(owner=None)} == {"a", "b", ""}


def test_each_front_end_has_its_own_server_id(store_url):
    with Journal(store_url) as unnamed:
        unnamed_id = unnamed.server_id()
    with Journal(store_url, front_end="a") as a, Journal(store_url, front_end="b") as b:
        a_id, b_id = a.server_id(), b.server_id()
        # A named front end never takes the legacy mark of a journal from before ids.
        assert a.server_id(legacy=lambda: "legacy") == a_id
    assert len({unnamed_id, a_id, b_id}) == 3
    with Journal(store_url, front_end="a") as a, Journal(store_url) as unnamed:
        assert (a.server_id(), unnamed.server_id()) == (a_id, unnamed_id)


@pytest.mark.parametrize("name", ["", "a b", "x" * 49, "é", "a/b", "a;drop"])
def test_a_bad_front_end_name_is_refused(tmp_path, name):
    with pytest.raises(JournalError, match="front end name"):
        Journal(tmp_path / "j.sqlite3", front_end=name)


# -- leases -----------------------------------------------------------------------------


def test_a_registered_front_end_renews_its_lease_and_unregisters(two):
    a, b = two
    a.register_front_end("127.0.0.1:4242", 30)
    b.register_front_end("127.0.0.2:4242", 30)
    before = time.time()
    rows = b.front_ends()
    assert [(row["name"], row["address"], row["taken_by"], row["expired"]) for row in rows] == [
        ("a", "127.0.0.1:4242", None, False),
        ("b", "127.0.0.2:4242", None, False),
    ]
    assert set(rows[0]) == {"name", "address", "lease_until", "taken_by", "expired"}
    assert a.renew_lease(60)
    assert a.front_ends()[0]["lease_until"] >= before + 60
    assert b.expired_front_ends() == [] and not b.take_over("a")  # a is alive
    assert a.unregister_front_end()
    assert [row["name"] for row in a.front_ends()] == ["b"]
    assert not a.renew_lease(30)  # its row is gone: it must not go on as if registered


def test_an_expired_front_end_is_taken_over_by_one_and_the_takeover_resumes(two, store_url):
    a, b = two
    b.register_front_end("127.0.0.2:4242", 30)
    _expire(a, b)
    assert b.expired_front_ends() == ["a"]
    assert b.take_over("a")
    assert b.front_ends()[0]["taken_by"] == "b"
    assert not a.renew_lease(30)  # too late: a learns it was taken over
    assert not a.unregister_front_end()  # nor may its clean stop hide it from b
    with Journal(store_url, front_end="c") as c:
        c.register_front_end("127.0.0.3:4242", 30)
        assert c.expired_front_ends() == [] and not c.take_over("a")  # b is at it
        # a restarting now would meet b ending its containers.
        with pytest.raises(JournalError, match="being taken over by front end b"):
            a.register_front_end("127.0.0.1:4242", 30)
        assert c.unregister_front_end()
    # b was cut short (restarted): it finds its takeover and takes it again.
    assert b.expired_front_ends() == ["a"] and b.take_over("a")
    assert b.unregister_front_end("a")  # the takeover's end
    assert b.expired_front_ends() == [] and [row["name"] for row in b.front_ends()] == ["b"]


def test_a_takeover_whose_taker_died_can_be_taken_again(two, store_url):
    a, b = two
    b.register_front_end("127.0.0.2:4242", 30)
    _expire(a, b)
    assert b.take_over("a")
    with Journal(store_url, front_end="c") as c:
        c.register_front_end("127.0.0.3:4242", 30)
        assert not c.take_over("a")
        _expire(b, c)  # b dies mid-takeover
        assert c.expired_front_ends() == ["a", "b"]
        assert not b.take_over("a")  # b, expired, may take nobody over
        # a restarting while b is dead: nobody is ending its containers any more.
        a.register_front_end("127.0.0.1:4242", 30)
        assert c.expired_front_ends() == ["b"]
        _expire(a, c)
        assert c.take_over("a") and c.take_over("b")
        assert {row["name"]: row["taken_by"] for row in c.front_ends()} == {
            "a": "c",
            "b": "c",
            "c": None,
        }
        with pytest.raises(JournalError, match="being taken over by front end c"):
            a.register_front_end("127.0.0.1:4242", 30)


def test_a_front_end_without_a_live_lease_takes_nobody_over(two):
    a, b = two
    b.register_front_end("127.0.0.2:4242", 30)
    _expire(a, b)
    assert b.unregister_front_end()  # b stopped cleanly: it is no front end any more
    assert b.expired_front_ends() == [] and not b.take_over("a")
    b.register_front_end("127.0.0.2:4242", 30)
    assert b.take_over("a")


def _race(calls: list) -> list:
    """Run ``calls`` (no-argument functions) at once, one thread each; their results."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=_WAIT)
            results[index] = calls[index]()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=_WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    return results


def test_of_two_concurrent_takeovers_exactly_one_wins(two, store_url):
    a, b = two
    a.register_front_end("127.0.0.1:4242", 60)
    b.register_front_end("127.0.0.2:4242", 60)
    for n in range(6):
        with Journal(store_url, front_end=f"x{n}") as x:
            _expire(x, a)
        won = _race([lambda: a.take_over(x.front_end), lambda: b.take_over(x.front_end)])
        assert sorted(won) == [False, True], n
        [row] = [row for row in a.front_ends() if row["name"] == x.front_end]
        assert row["taken_by"] == ("a" if won[0] else "b")


def test_leases_need_a_named_front_end_and_a_positive_lease(store_url):
    with Journal(store_url) as unnamed:
        for call in (
            lambda: unnamed.register_front_end("127.0.0.1:4242", 30),
            lambda: unnamed.renew_lease(30),
            lambda: unnamed.unregister_front_end(),
            lambda: unnamed.expired_front_ends(),
            lambda: unnamed.take_over("a"),
        ):
            with pytest.raises(JournalError, match="no named front end"):
                call()
        assert unnamed.front_ends() == []
    with Journal(store_url, front_end="a") as a:
        for lease in (0, -1, float("nan"), "30", True):
            with pytest.raises(JournalError, match="a lease must be a positive number"):
                a.register_front_end("127.0.0.1:4242", lease)
        assert a.front_ends() == []


# -- capacity ---------------------------------------------------------------------------


def test_capacity_is_claimed_within_the_limit_of_all_front_ends(two):
    a, b = two
    assert a.claim_capacity("alpha", 2, 3)
    assert not b.claim_capacity("alpha", 2, 3)  # 2 + 2 > 3: nothing written
    assert a.capacity_of_others() == {}
    assert b.claim_capacity("alpha", 1, 3)
    assert not a.claim_capacity("alpha", 3, 3)
    assert a.claim_capacity("alpha", 2, 3)  # a's own count is replaced, not added to
    assert b.claim_capacity("beta", 7, None)  # no limit
    assert a.capacity_of_others() == {"alpha": 1, "beta": 7}
    assert b.capacity_of_others() == {"alpha": 2}
    a.report_capacity("alpha", 0)
    a.report_capacity("alpha", 0)
    assert b.capacity_of_others() == {"alpha": 0}
    assert b.claim_capacity("alpha", 3, 3)
    assert b.drop_capacity("b") == 2
    assert a.capacity_of_others() == {}
    for bad in (-1, 1.5, True, None):
        with pytest.raises(JournalError, match="whole number"):
            a.claim_capacity("alpha", bad, 3)
    with pytest.raises(JournalError, match="limit must be a whole number"):
        a.claim_capacity("alpha", 1, -1)
    with pytest.raises(JournalError, match="used must be a whole number"):
        a.report_capacity("alpha", -1)


def test_two_front_ends_claiming_at_once_never_exceed_the_limit(two):
    # Each front end counts its own containers (as the engine does, under its own lock)
    # and claims one more from 8 threads; across the two, the journal is the referee.
    limit = 5
    calls = []
    for journal in two:
        own = {"lock": threading.Lock(), "used": 0}

        def claim(journal: Journal = journal, own: dict = own) -> bool:
            with own["lock"]:
                granted = journal.claim_capacity("alpha", own["used"] + 1, limit)
                own["used"] += granted
                return granted

        calls += [claim] * 8
    assert sum(_race(calls)) == limit
    a, b = two
    assert a.capacity_of_others().get("alpha", 0) + b.capacity_of_others().get("alpha", 0) == 5


def test_many_front_ends_claiming_the_last_slots_at_once(store_url):
    # Sixteen front ends, one claim each, all at once: the race the lock exists for.
    limit = 5
    journals = [Journal(store_url, front_end=f"f{n}") for n in range(16)]
    try:
        granted = _race(
            [lambda j=journal: j.claim_capacity("alpha", 1, limit) for journal in journals]
        )
        assert sum(granted) == limit
        with Journal(store_url, front_end="watcher") as watcher:
            assert watcher.capacity_of_others() == {"alpha": limit}
    finally:
        for journal in journals:
            journal.close()


# -- hosts' drain states ----------------------------------------------------------------


def test_a_drain_by_another_front_end_is_seen_after_a_reload(two):
    a, b = two
    assert a.host_enabled("alpha")  # read once, and kept
    b.set_host_enabled("alpha", False)
    assert not b.host_enabled("alpha")
    assert a.host_enabled("alpha")  # a's kept state, until it reads again
    a.reload_host_states()
    assert not a.host_enabled("alpha")
    b.set_host_enabled("alpha", True)
    a.reload_host_states()
    assert a.host_enabled("alpha")
