"""Property: whatever the peer sends, a connection yields events or raises RemoteProtocolError.

Random bytes rarely get past the first step, so the deeper cases mutate a recorded valid
transcript (deterministic randomness makes it replayable), then split it arbitrarily.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_support import STAT_REQUEST, STAT_RESPONSE, Exchange, seeded_randbytes

from anweddol_actors.protocol import (
    NEED_DATA,
    ClientConnection,
    ConnectionClosed,
    RemoteProtocolError,
    RequestReceived,
    ServerConnection,
)

SEED = 1234
# Profiles "dev"/"ci" (tests/conftest.py) set the example counts; these only relax timing,
# since each example may run RSA operations.
relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed_all(conn, data: bytes, cuts: list[int], eof: bool) -> list:
    """Feed ``data`` split at ``cuts``; the invariant is checked by the caller."""
    events: list = []
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    for piece in pieces + ([b""] if eof else []):
        conn.receive_data(piece)
        while True:
            event = conn.next_event()  # may only raise RemoteProtocolError
            if event is NEED_DATA or isinstance(event, ConnectionClosed):
                break
            events.append(event)
            if isinstance(event, RequestReceived):
                conn.send_response(STAT_RESPONSE)
        conn.data_to_send()
        if isinstance(event, ConnectionClosed):
            break
    return events


def check(conn, data: bytes, cuts: list[int], eof: bool) -> None:
    try:
        feed_all(conn, data, cuts, eof)
    except RemoteProtocolError as exc:
        assert str(exc)
        assert conn.state == "error"


@pytest.fixture(scope="module")
def transcripts(server_key, client_key) -> Exchange:
    client = ClientConnection(client_key, randbytes=seeded_randbytes(SEED))
    client.send_request(STAT_REQUEST)
    return Exchange(client, ServerConnection(server_key)).run()


mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "truncate"]),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=255),
)


def mutate(data: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, where, value in mutations:
        i = where % (len(buf) + 1)
        if kind == "flip" and i < len(buf):
            buf[i] ^= value or 1
        elif kind == "insert":
            buf[i:i] = bytes([value])
        elif kind == "delete":
            del buf[i : i + 1 + value % 8]
        elif kind == "truncate":
            del buf[i:]
    return bytes(buf)


cuts = st.lists(st.integers(min_value=0), max_size=12)


@relaxed
@given(data=st.binary(max_size=2048), cuts=cuts, eof=st.booleans())
def test_server_random_bytes(server_key, data, cuts, eof):
    check(ServerConnection(server_key), data, cuts, eof)


@relaxed
@given(
    length=st.integers(min_value=-10, max_value=20000),
    body=st.binary(max_size=600),
    cuts=cuts,
    eof=st.booleans(),
)
def test_server_plausible_key_fields(server_key, length, body, cuts, eof):
    """Well-formed length fields, arbitrary keys: reaches the key parsing step."""
    field = str(length).encode()[:8].ljust(8, b"=")
    check(ServerConnection(server_key), field + body, cuts, eof)


@relaxed
@given(mutations=st.lists(mutation, min_size=1, max_size=4), cuts=cuts, eof=st.booleans())
def test_server_mutated_transcript(server_key, transcripts, mutations, cuts, eof):
    data = mutate(transcripts.client_stream, mutations)
    check(ServerConnection(server_key), data, cuts, eof)


@relaxed
@given(data=st.binary(max_size=2048), cuts=cuts, eof=st.booleans())
def test_client_random_bytes(client_key, data, cuts, eof):
    conn = ClientConnection(client_key)
    conn.send_request(STAT_REQUEST)
    check(conn, data, cuts, eof)


@relaxed
@given(mutations=st.lists(mutation, min_size=1, max_size=4), cuts=cuts, eof=st.booleans())
def test_client_mutated_transcript(client_key, transcripts, mutations, cuts, eof):
    conn = ClientConnection(client_key, randbytes=seeded_randbytes(SEED))
    conn.send_request(STAT_REQUEST)
    check(conn, mutate(transcripts.server_stream, mutations), cuts, eof)


@relaxed
@given(cuts=cuts)
def test_unmutated_transcript_replays(server_key, client_key, transcripts, cuts):
    """The harness itself: an intact transcript, split anywhere, completes on both sides."""
    events = feed_all(ServerConnection(server_key), transcripts.client_stream, cuts, True)
    assert [type(e).__name__ for e in events] == [
        "HandshakeComplete",
        "RequestReceived",
        "MessageSent",
    ]
    conn = ClientConnection(client_key, randbytes=seeded_randbytes(SEED))
    conn.send_request(STAT_REQUEST)
    events = feed_all(conn, transcripts.server_stream, cuts, True)
    assert events[-1].payload == STAT_RESPONSE
