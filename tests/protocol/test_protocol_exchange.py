"""Full exchanges in memory: whole, byte by byte, with trailing data, against the document."""

from __future__ import annotations

import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from protocol_support import (
    OAEP_SHA256,
    STAT_REQUEST,
    STAT_RESPONSE,
    Exchange,
    Wire,
    bytewise,
    drain,
    seeded_randbytes,
    whole,
)

from anweddol_actors.protocol import (
    NEED_DATA,
    ClientConnection,
    ConnectionClosed,
    LocalProtocolError,
    MessageSent,
    RequestReceived,
    ResponseReceived,
    ServerConnection,
)


def event_types(events: list) -> list[str]:
    return [type(e).__name__ for e in events]


@pytest.mark.parametrize("chunker", [whole, bytewise], ids=["whole", "bytewise"])
def test_full_exchange(server_key, client_key, chunker):
    client = ClientConnection(client_key)
    client.send_request(STAT_REQUEST)
    ex = Exchange(client, ServerConnection(server_key), chunker).run().close()

    assert event_types(ex.server_events) == [
        "HandshakeComplete",
        "RequestReceived",
        "MessageSent",
        "ConnectionClosed",
    ]
    assert event_types(ex.client_events) == [
        "HandshakeComplete",
        "MessageSent",
        "ResponseReceived",
        "ConnectionClosed",
    ]
    assert ex.server_events[1] == RequestReceived(payload=STAT_REQUEST, error=None)
    assert ex.client_events[2] == ResponseReceived(payload=STAT_RESPONSE, error=None)
    assert ex.server_events[0].peer_public_key_pem == Wire.pem(client_key)
    assert ex.server_events[0].peer_key_size == 2048
    assert ex.client_events[0].peer_key_size == 2048
    assert ex.server.state == "closed" and ex.client.state == "closed"


def test_each_side_writes_once_per_turn(server_key, client_key):
    """Steps that need no answer in between go out as one write (Nagle/delayed ACK)."""
    client = ClientConnection(client_key)
    client.send_request(STAT_REQUEST)
    ex = Exchange(client, ServerConnection(server_key)).run()
    server_pem = Wire.pem(server_key)
    # server: 2 | 4+5 | 7 | 10+11 | ack of the request frame | response frame | response body
    assert len(ex.server_writes) == 7
    assert ex.server_writes[0] == b"1"
    assert ex.server_writes[1] == b"1" + Wire.key_length(server_pem)
    assert ex.server_writes[2] == server_pem
    assert len(ex.server_writes[3]) == 1 + 256 and ex.server_writes[3][:1] == b"1"
    assert ex.server_writes[4] == b"1"
    assert len(ex.server_writes[5]) == 16
    # client: 1 | 3 | 6 | 8+9 | 12+request frame | request body | ack of the response frame
    client_pem = Wire.pem(client_key)
    assert ex.client_writes[:3] == [Wire.key_length(client_pem), client_pem, b"1"]
    assert len(ex.client_writes[3]) == 1 + 256 and ex.client_writes[3][:1] == b"1"
    assert len(ex.client_writes[4]) == 1 + 16 and ex.client_writes[4][:1] == b"1"
    assert ex.client_writes[6] == b"1"
    assert len(ex.client_writes) == 7


def test_client_bytes_follow_the_document(server_key, client_key):
    """Decode what ClientConnection sends with the independent Wire encoding."""
    client = ClientConnection(client_key)
    client.send_request(STAT_REQUEST)
    ex = Exchange(client, ServerConnection(server_key)).run()
    secret = server_key.decrypt(ex.client_writes[3][1:], OAEP_SHA256)
    assert len(secret) == 48
    # The server echoed the same 48 bytes to the client's key (step 11).
    assert client_key.decrypt(ex.server_writes[3][1:], OAEP_SHA256) == secret
    wire = Wire(secret[:32], secret[32:])
    length = wire.read_length(ex.client_writes[4][1:])
    assert length == len(ex.client_writes[5])
    assert wire.read_body(ex.client_writes[5]) == STAT_REQUEST
    # The response continues the IV chain from the request's next IV.
    assert wire.read_length(ex.server_writes[5]) == len(ex.server_writes[6])
    assert wire.read_body(ex.server_writes[6]) == STAT_RESPONSE


def test_server_against_document_peer(server_key, client_key):
    """Drive ServerConnection with bytes built straight from PROTOCOL.md."""
    server = ServerConnection(server_key)
    events: list = []
    pem = Wire.pem(client_key)
    server.receive_data(Wire.key_length(pem))
    drain(server, events, None)
    assert server.data_to_send() == b"1"
    server.receive_data(pem)
    drain(server, events, None)
    server_pem = Wire.pem(server_key)
    assert server.data_to_send() == b"1" + Wire.key_length(server_pem)
    server.receive_data(b"1")
    drain(server, events, None)
    assert server.data_to_send() == server_pem
    wire = Wire()
    server.receive_data(b"1" + wire.secret_block(server_key.public_key()))
    drain(server, events, None)
    out = server.data_to_send()
    assert out[:1] == b"1" and client_key.decrypt(out[1:], OAEP_SHA256) == wire.key + wire.iv
    assert events == []
    frame, body = wire.json_message({"verb": "CUSTOM", "parameters": {"x": [1, 2]}})
    server.receive_data(b"1" + frame)
    drain(server, events, None)
    assert event_types(events) == ["HandshakeComplete"]
    assert server.data_to_send() == b"1"
    server.receive_data(body)
    drain(server, events, None)
    assert events[-1] == RequestReceived({"verb": "CUSTOM", "parameters": {"x": [1, 2]}})
    assert server.state == "send_response" and server.needs_local_action
    server.send_response(STAT_RESPONSE)
    assert not server.needs_local_action
    frame = server.data_to_send()
    assert wire.read_length(frame) > 16
    assert server.next_event() is NEED_DATA  # nothing goes out before the ack
    assert server.data_to_send() == b""
    server.receive_data(b"1")
    assert isinstance(server.next_event(), MessageSent)
    assert wire.read_body(server.data_to_send()) == STAT_RESPONSE
    server.receive_data(b"")
    assert server.next_event() == ConnectionClosed()


def test_trailing_data_is_kept_for_the_next_step(server_key, client_key):
    """The whole client transcript in one chunk: every step consumes only its own bytes."""
    seed = 7
    client = ClientConnection(client_key, randbytes=seeded_randbytes(seed))
    client.send_request(STAT_REQUEST)
    recorded = Exchange(client, ServerConnection(server_key)).run()

    server = ServerConnection(server_key)
    events: list = []
    server.receive_data(recorded.client_stream)
    drain(server, events)
    assert event_types(events) == ["HandshakeComplete", "RequestReceived", "MessageSent"]
    assert events[1].payload == STAT_REQUEST

    # And the client side: replay the server's transcript in one chunk.
    client = ClientConnection(client_key, randbytes=seeded_randbytes(seed))
    client.send_request(STAT_REQUEST)
    client.receive_data(recorded.server_stream)
    events = []
    drain(client, events)
    assert event_types(events) == ["HandshakeComplete", "MessageSent", "ResponseReceived"]
    assert events[-1].payload == STAT_RESPONSE
    # Byte for byte the same as the first run, but for the OAEP block (randomized padding).
    replayed = client.data_to_send()
    start = sum(len(w) for w in recorded.client_writes[:3]) + 1
    assert len(replayed) == len(recorded.client_stream)
    assert replayed[:start] == recorded.client_stream[:start]
    assert replayed[start + 256 :] == recorded.client_stream[start + 256 :]


def test_request_after_handshake_complete(server_key, client_key):
    """send_request may also wait for HandshakeComplete, as with h11."""
    client = ClientConnection(client_key)
    server = ServerConnection(server_key)
    client_events: list = []
    server_events: list = []
    for _ in range(10):
        server.receive_data(client.data_to_send())
        drain(server, server_events)
        client.receive_data(server.data_to_send())
        drain(client, client_events)
        if client_events:
            break
    assert event_types(client_events) == ["HandshakeComplete"]
    assert client.state == "send_request"
    client.send_request({"verb": "STAT", "parameters": {}})
    ex = Exchange(client, server).run()
    assert ex.client_events[-1] == ResponseReceived(STAT_RESPONSE)


def test_exchange_with_4096_bit_keys():
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    client_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    started = time.perf_counter()
    client = ClientConnection(client_key)
    client.send_request(STAT_REQUEST)
    ex = Exchange(client, ServerConnection(server_key)).run()
    elapsed = time.perf_counter() - started
    assert ex.client_events[-1] == ResponseReceived(STAT_RESPONSE)
    assert len(ex.client_writes[3]) == 1 + 512  # 4096-bit ciphertext
    assert len(ex.server_writes[3]) == 1 + 512
    assert len(Wire.pem(client_key)) == 800 and ex.client_writes[0] == b"800====="
    print(f"in-memory exchange, 4096-bit keys: {elapsed * 1000:.1f} ms")


def test_mixed_key_sizes(server_key):
    """The protocol works with any size: the RSA blocks follow each key."""
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    client = ClientConnection(small)
    client.send_request(STAT_REQUEST)
    ex = Exchange(client, ServerConnection(server_key)).run()
    assert len(ex.server_writes[3]) == 1 + 128 and len(ex.client_writes[3]) == 1 + 256
    assert ex.client_events[-1].payload == STAT_RESPONSE


def test_large_message_and_unicode(server_key, client_key):
    request = {"verb": "STAT", "parameters": {"blob": "é€" * 50_000}}
    client = ClientConnection(client_key)
    client.send_request(request)
    ex = Exchange(client, ServerConnection(server_key), response=request).run()
    assert ex.server_events[1].payload == request
    assert ex.client_events[-1].payload == request


def test_message_size_limit_is_configurable(server_key, client_key):
    client = ClientConnection(client_key)
    client.send_request({"verb": "STAT", "parameters": {"blob": "x" * 100}})
    server = ServerConnection(server_key, max_message_size=64)
    with pytest.raises(Exception, match="exceeds the maximum of 64 bytes"):
        Exchange(client, server).run()
    assert server.state == "error"


def test_each_request_gets_fresh_session_key(server_key, client_key):
    first = ClientConnection(client_key)
    second = ClientConnection(client_key)
    first.send_request(STAT_REQUEST)
    second.send_request(STAT_REQUEST)
    a = Exchange(first, ServerConnection(server_key)).run()
    b = Exchange(second, ServerConnection(server_key)).run()
    secret_a = server_key.decrypt(a.client_writes[3][1:], OAEP_SHA256)
    secret_b = server_key.decrypt(b.client_writes[3][1:], OAEP_SHA256)
    assert secret_a != secret_b


class TestLocalMisuse:
    def test_response_before_request(self, server_key):
        server = ServerConnection(server_key)
        with pytest.raises(
            LocalProtocolError, match="cannot send a response in state 'key_length'"
        ):
            server.send_response(STAT_RESPONSE)

    def test_two_responses(self, server_key, client_key):
        client = ClientConnection(client_key)
        client.send_request(STAT_REQUEST)
        ex = Exchange(client, ServerConnection(server_key)).run()
        with pytest.raises(LocalProtocolError):
            ex.server.send_response(STAT_RESPONSE)

    def test_two_requests(self, client_key):
        client = ClientConnection(client_key)
        client.send_request(STAT_REQUEST)
        with pytest.raises(LocalProtocolError, match="only one request"):
            client.send_request(STAT_REQUEST)

    def test_unserializable_response(self, server_key, client_key):
        client = ClientConnection(client_key)
        client.send_request(STAT_REQUEST)
        server = ServerConnection(server_key)
        ex = Exchange(client, server, response=None)
        with pytest.raises(AssertionError):
            ex.run(max_turns=8)
        assert server.state == "send_response"
        with pytest.raises(LocalProtocolError, match="cannot encode"):
            server.send_response({"data": object()})

    def test_data_after_eof(self, server_key):
        server = ServerConnection(server_key)
        server.receive_data(b"")
        with pytest.raises(LocalProtocolError):
            server.receive_data(b"1")

    def test_bad_own_keys(self):
        with pytest.raises(TypeError):
            ServerConnection("not a key")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            ServerConnection(
                rsa.generate_private_key(public_exponent=65537, key_size=1024), max_message_size=16
            )


def test_json_text_is_plain_json(server_key, client_key):
    """The request body is the json.dumps text, nothing wrapped around it."""
    client = ClientConnection(client_key)
    client.send_request(STAT_REQUEST)
    ex = Exchange(client, ServerConnection(server_key)).run()
    secret = server_key.decrypt(ex.client_writes[3][1:], OAEP_SHA256)
    wire = Wire(secret[:32], secret[32:])
    plain = wire._unaes(wire.iv, ex.client_writes[5][:-16])
    assert plain == json.dumps(STAT_REQUEST).encode()
