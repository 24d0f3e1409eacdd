"""Forwarder connection limits, over real loopback sockets from distinct source addresses
(127.0.0.2, 127.0.0.3, ... are all loopback): past a limit a connection is accepted and
closed before the target hears of it; strangers together never hold more than one
address's allowance, so the owner always gets through."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pykka
import pytest

from anweddol_actors.engine.entities import start_forwarder_with, stop_actor
from anweddol_actors.forwarding import Relay, reserve_port
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle
from tests.forwarding.test_forwarding_relay import (
    HOST,
    TEST_RANGE,
    Target,
    closed_by_peer,
    echo,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)

OWNER = "127.0.0.1"


@pytest.fixture
def target() -> Iterator[Target]:
    target = Target(echo)
    yield target
    target.close()


@pytest.fixture
def opened() -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    yield sockets
    for sock in sockets:
        sock.close()


def relay_for(target: Target, **limits) -> Relay:
    """A relay to `target` with `limits`, not started (the test's ``with`` starts it)."""
    return Relay(reserve_port(TEST_RANGE, HOST), (HOST, target.port), **limits)


def connect_from(source: str, port: int, opened: list[socket.socket]) -> socket.socket | None:
    """A connection from `source` to `port`; None when it was reset before connect()
    returned (the kernel finished the handshake, the relay already refused it)."""
    try:
        sock = socket.create_connection((HOST, port), timeout=10, source_address=(source, 0))
    except ConnectionResetError:
        return None
    opened.append(sock)
    return sock


def relayed(sock: socket.socket | None) -> bool:
    """True when bytes go through to the target and back; False when we were refused."""
    if sock is None:
        return False
    try:
        sock.sendall(b"ping")
        return sock.recv(4) == b"ping"
    except (ConnectionResetError, BrokenPipeError):
        return False


def refused(sock: socket.socket | None) -> bool:
    return sock is None or closed_by_peer(sock)


def test_an_address_past_its_cap_is_refused_before_the_target(target, opened):
    with relay_for(target, max_connections_per_address=4, owner=OWNER) as relay:
        mine = [connect_from(OWNER, relay.port, opened) for _ in range(4)]
        assert all(relayed(sock) for sock in mine)
        assert refused(connect_from(OWNER, relay.port, opened))
        assert target.accepted == 4  # the refused one never reached the target
        assert (relay.stats.accepted, relay.stats.refused) == (4, 1)
        assert relay.connections_from(OWNER) == 4
        # One closes: its place is free again.
        mine[0].close()
        assert wait_for(lambda: relay.connections_from(OWNER) == 3)
        assert relayed(connect_from(OWNER, relay.port, opened))


def test_strangers_share_one_allowance_and_the_owner_gets_in(target, opened):
    with relay_for(target, max_connections=16, max_connections_per_address=4, owner=OWNER) as r:
        strangers = [connect_from(f"127.0.0.{n}", r.port, opened) for n in range(2, 6)]
        assert all(relayed(sock) for sock in strangers)
        # A fifth stranger, from yet another address, is refused: strangers hold at most
        # 4 of the guest's connections, below dropbear's 5 unauthenticated per source.
        assert refused(connect_from("127.0.0.6", r.port, opened))
        assert refused(connect_from("127.0.0.2", r.port, opened))
        # The owner is not a stranger: it still gets its own allowance.
        assert all(relayed(connect_from(OWNER, r.port, opened)) for _ in range(4))
        assert r.stats.refused == 2 and r.connection_count == 8
        assert target.accepted == 8


def test_without_an_owner_every_address_is_a_stranger(target, opened):
    with relay_for(target, max_connections_per_address=2) as relay:
        assert relayed(connect_from("127.0.0.2", relay.port, opened))
        assert relayed(connect_from("127.0.0.3", relay.port, opened))
        assert refused(connect_from(OWNER, relay.port, opened))


def test_the_total_cap_holds_for_the_owner_too(target, opened):
    with relay_for(target, max_connections=3, owner=OWNER) as relay:
        assert all(relayed(connect_from(OWNER, relay.port, opened)) for _ in range(3))
        assert refused(connect_from(OWNER, relay.port, opened))
        assert refused(connect_from("127.0.0.2", relay.port, opened))
        assert relay.stats.refused == 2


def test_refusals_are_logged_at_a_bounded_rate(target, opened, caplog):
    caplog.set_level(logging.WARNING, logger="anweddol_actors.forwarding.relay")
    with relay_for(target, max_connections_per_address=1, owner=OWNER) as relay:
        assert relayed(connect_from("127.0.0.2", relay.port, opened))
        for _ in range(30):
            assert refused(connect_from("127.0.0.3", relay.port, opened))
        assert relay.stats.refused == 30
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 1, lines  # 30 refusals, well inside one interval
    assert "127.0.0.3" in lines[0] and "other than the owner" in lines[0]


@pytest.mark.parametrize("limit", [0, -1, 2.5, "4"])
def test_bad_limits_are_refused(target, limit):
    sock = reserve_port(TEST_RANGE, HOST)
    try:
        with pytest.raises(ValueError, match="positive integer"):
            Relay(sock, (HOST, target.port), max_connections=limit)
    finally:
        sock.close()


def test_the_forwarder_journals_its_owner_and_keeps_it_when_adopted(target, opened, tmp_path):
    journal = Journal(tmp_path / "journal.sqlite3")
    limits = {"max_connections": 16, "max_connections_per_address": 1}
    forwarder_id = "6b1f7e0a-0c44-4c7e-a8a4-1f2e3d4c5b6a.forwarder"
    try:
        first = start_forwarder_with(
            journal,
            forwarder_id,
            (TEST_RANGE.start, TEST_RANGE.stop - 1),
            HOST,
            (HOST, target.port),
            owner="127.0.0.2",
            **limits,
        )
        first.create().get()
        first.start_forwarding().get()
        port = first.describe().get()["port"]
        row = journal.entity(forwarder_id, kind="forwarder")
        assert row["data"]["owner"] == "127.0.0.2"
        # The server dies; its forwarder's socket goes with it (released here).
        first.release().get()
        stop_actor(first)

        adopted = start_forwarder_with(
            journal,
            forwarder_id,
            (port, port),
            HOST,
            (HOST, target.port),
            Lifecycle("forwarder", forwarder_id, journal, row["data"], state="started"),
            **limits,
        )
        assert adopted.resume_forwarding().get() == port
        assert adopted.describe().get()["owner"] == "127.0.0.2"
        assert relayed(connect_from("127.0.0.3", port, opened))
        assert refused(connect_from("127.0.0.4", port, opened))
        assert relayed(connect_from("127.0.0.2", port, opened))
        assert adopted.describe().get()["refused"] == 1
        adopted.stop_forwarding().get()
        stop_actor(adopted)
    finally:
        journal.close()
    assert pykka.ActorRegistry.get_all() == []
