"""Bounded sessions and cheap refusals, on real loopback sockets against a real server:
the request deadline, the connection caps (in all and per address), the bounded log of a
refusal flood, bounded verbs, and what a connection that never asks anything valid costs
the journal."""

from __future__ import annotations

import logging
import select
import socket

import pykka
import pytest
from rawpeer import RawPeer, closed_by_peer, length_field
from serverharness import wait_for

from anweddol_actors.client import Client
from anweddol_actors.engine.session import SessionActor
from anweddol_actors.protocol.crypto import public_pem


def connect(address: tuple, source: str = "127.0.0.1") -> socket.socket:
    """A loopback connection from ``source`` (any 127.0.0.0/8 address is ours)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(address)
    return sock


def session_actors() -> int:
    return len(pykka.ActorRegistry.get_by_class(SessionActor))


def session_rows(journal) -> dict[str, list[dict]]:
    """The journal's session rows, by session."""
    sessions: dict[str, list[dict]] = {}
    for row in journal.history(kind="session"):
        sessions.setdefault(row["entity_id"], []).append(row)
    return sessions


def ended(journal) -> int:
    return sum(rows[-1]["dest"] == "destroyed" for rows in session_rows(journal).values())


def test_a_trickling_client_is_cut_at_the_request_deadline(make_server, client_key):
    # Each byte comes well within the timeout (1 s), which restarts at every byte; only the
    # deadline (2 s from the accept) can end this client.
    running = make_server(client_timeout=1.0, request_deadline=2.0)
    journal = running.engine.journal
    sock = connect(running.address)
    payload = length_field(450) + public_pem(client_key)
    cut = False
    with sock:
        for byte in payload[:60]:  # 60 bytes at 0.3 s: 18 s, far past the deadline
            readable, _, _ = select.select([sock], [], [], 0.3)
            if readable and closed_by_peer(sock, timeout=1):
                cut = True
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # reset by the server: cut
                cut = True
                break
    assert cut, "the trickling client was never cut"
    wait_for(lambda: ended(journal) == 1, what="the session's end in the journal")
    (rows,) = session_rows(journal).values()
    assert [row["trigger"] for row in rows] == ["start", "fail", "destroy"]
    assert "request deadline" in rows[1]["details"]["error"]
    assert running.engine.connection_limits.open == 0


def test_the_deadline_holds_with_no_per_wait_timeout(make_server):
    running = make_server(client_timeout=None, request_deadline=1.0)
    with connect(running.address) as sock:
        assert closed_by_peer(sock, timeout=15)
    wait_for(lambda: ended(running.engine.journal) == 1, what="the session's end")
    (rows,) = session_rows(running.engine.journal).values()
    assert "request deadline" in rows[1]["details"]["error"]


def test_past_max_connections_a_connection_is_closed_at_once_without_a_session(make_server):
    running = make_server(client_timeout=30.0, max_connections=3, max_connections_per_address=100)
    limits = running.engine.connection_limits
    journal = running.engine.journal
    held = [connect(running.address, f"127.0.0.{2 + i}") for i in range(3)]
    try:
        wait_for(lambda: limits.open == 3 and session_actors() == 3, what="3 sessions")
        commits, rows = journal.commits, len(journal.history())
        extra = connect(running.address, "127.0.0.9")
        with extra:
            assert closed_by_peer(extra, timeout=5)
        assert limits.refused == 1
        assert session_actors() == 3 and len(running.engine._sessions) == 3
        assert (journal.commits, len(journal.history())) == (commits, rows)
    finally:
        held.pop().close()
    # A connection stops counting when its session ends: the next client is served.
    wait_for(lambda: limits.open == 2, what="the closed connection's slot back")
    assert Client(*running.address, timeout=10).stat()["success"] is True
    for sock in held:
        sock.close()
    wait_for(lambda: limits.open == 0, what="every slot back")
    assert limits.refused == 1


def test_past_max_connections_per_address_only_that_address_is_refused(make_server):
    running = make_server(client_timeout=30.0, max_connections=100, max_connections_per_address=2)
    limits = running.engine.connection_limits
    held = [connect(running.address, "127.0.0.2") for _ in range(2)]
    try:
        wait_for(lambda: limits.open_from("127.0.0.2") == 2, what="2 sessions from 127.0.0.2")
        with connect(running.address, "127.0.0.2") as extra:
            assert closed_by_peer(extra, timeout=5)
        assert limits.refused == 1
        other = connect(running.address, "127.0.0.3")
        with other:
            wait_for(lambda: limits.open_from("127.0.0.3") == 1, what="127.0.0.3 admitted")
            assert not closed_by_peer(other, timeout=0.5)
        assert session_actors() <= 3
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: limits.open == 0, what="every slot back")
    assert limits.refused == 1


def test_a_refusal_flood_is_counted_and_logged_at_a_bounded_rate(make_server, caplog):
    running = make_server(client_timeout=30.0, max_connections=1)
    limits = running.engine.connection_limits
    caplog.set_level(logging.WARNING, logger="anweddol_actors.transport.limits")
    flood = 200
    with connect(running.address):
        wait_for(lambda: limits.open == 1, what="the one admitted connection")
        for _ in range(flood):
            with connect(running.address) as sock:
                assert closed_by_peer(sock, timeout=5)
        wait_for(lambda: limits.refused == flood, what="every refusal counted")
        lines = [r for r in caplog.records if r.name == "anweddol_actors.transport.limits"]
        # One line per 5 s, carrying the count folded since the last one.
        assert 1 <= len(lines) == limits.log_lines <= 3, [r.getMessage() for r in lines]
        assert "max_connections reached" in lines[0].getMessage()
    wait_for(lambda: limits.open == 0, what="the slot back")


@pytest.mark.parametrize(
    ("verb", "reason"),
    [
        ("A" * 65, "verb: ['max length is 64']"),
        ("A" * 64, "Unhandled verb"),  # the longest verb allowed: valid, nobody handles it
    ],
)
def test_a_verb_over_64_characters_is_a_bad_request(make_server, client_key, verb, reason):
    running = make_server()
    peer = RawPeer(running.address, client_key)
    try:
        peer.handshake()
        response = peer.request(verb)
    finally:
        peer.close()
    assert response["success"] is False
    assert response["message"] == f"Bad request ({reason})"


def test_huge_parameters_are_a_bad_request_with_a_short_reason(make_server, client_key):
    running = make_server()
    peer = RawPeer(running.address, client_key)
    try:
        peer.handshake()
        response = peer.request("STAT", {"x" * 100_000: 1})
    finally:
        peer.close()
    assert response["message"].startswith("Bad request (parameters: ")
    assert len(response["message"]) < 300
    wait_for(lambda: ended(running.engine.journal) == 1, what="the session's end")
    (rows,) = session_rows(running.engine.journal).values()
    assert len(str(rows[2]["details"])) < 300  # the journalled reason is cut short too


def test_connections_without_a_valid_request_cost_one_commit_each(
    make_server, client_key, tmp_path
):
    """A file journal (synchronous=FULL: one fsync per commit). A connection that never
    produces a valid request writes its 3 to 5 session rows in one commit; a valid one
    writes its rows one by one once its request is in."""
    running = make_server(database=str(tmp_path / "journal.sqlite3"))
    journal = running.engine.journal
    before = journal.commits

    malformed = 4
    for _ in range(malformed):
        peer = RawPeer(running.address, client_key)
        try:
            peer.handshake()
            assert peer.request("stat")["message"].startswith("Bad request")
        finally:
            peer.close()
    silent = 3
    for _ in range(silent):
        with connect(running.address):
            pass  # connect and hang up: start, fail, destroy
    wait_for(lambda: ended(journal) == malformed + silent, what="every session's end")
    sessions = session_rows(journal).values()
    rows = sum(len(r) for r in sessions)
    assert rows == malformed * 5 + silent * 3  # start handshake malformed close destroy
    assert journal.commits - before == malformed + silent

    # For comparison, a valid request: its held rows and its request row in one commit,
    # then one commit per later step.
    before = journal.commits
    assert Client(*running.address, timeout=10).stat()["success"] is True
    wait_for(lambda: ended(journal) == malformed + silent + 1, what="the STAT's end")
    (valid,) = [r for r in session_rows(journal).values() if r[2]["trigger"] == "request"]
    assert [row["trigger"] for row in valid] == [
        "start",
        "handshake",
        "request",
        "close",
        "destroy",
    ]
    assert journal.commits - before == 3  # start+handshake+request, close, destroy
