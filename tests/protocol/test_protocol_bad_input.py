"""Peers that break the protocol: each case names what was wrong and refuses where defined."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from protocol_support import (
    OAEP_SHA256,
    STAT_REQUEST,
    STAT_RESPONSE,
    Exchange,
    Wire,
    drain,
    seeded_randbytes,
)

from anweddol_actors.protocol import (
    NEED_DATA,
    ClientConnection,
    HandshakeComplete,
    RemoteProtocolError,
    RequestReceived,
    ResponseReceived,
    ServerConnection,
)
from anweddol_actors.protocol.messages import validate_request


def run_until_error(conn, data: bytes, eof: bool = False) -> RemoteProtocolError:
    """Feed ``data`` (and EOF), answer requests; return the error the connection raises."""
    conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError) as info:
        drain(conn, [])
    assert conn.state == "error"
    # A failed connection stays failed.
    with pytest.raises(RemoteProtocolError, match="already failed"):
        conn.next_event()
    return info.value


class ServerPeer:
    """Walks a ServerConnection through the handshake with document-built bytes."""

    def __init__(self, server_key, client_key) -> None:
        self.server = ServerConnection(server_key)
        self.server_key, self.client_key = server_key, client_key
        self.pem = Wire.pem(client_key)
        self.wire = Wire()
        self.events: list = []

    def send(self, data: bytes) -> bytes:
        self.server.receive_data(data)
        drain(self.server, self.events, None)
        return self.server.data_to_send()

    def until_session_key(self) -> None:
        assert self.send(Wire.key_length(self.pem)) == b"1"
        assert self.send(self.pem)[:1] == b"1"
        assert self.send(b"1") == Wire.pem(self.server_key)
        assert self.send(b"1") == b""

    def handshake(self) -> None:
        self.until_session_key()
        assert self.send(self.wire.secret_block(self.server_key.public_key()))[:1] == b"1"
        assert self.send(b"1") == b""
        assert isinstance(self.events[-1], HandshakeComplete)


@pytest.fixture
def peer(server_key, client_key) -> ServerPeer:
    return ServerPeer(server_key, client_key)


class TestKeyLengthField:
    @pytest.mark.parametrize(
        "field",
        [
            b"hello!!!",
            b"0=======",
            b"00000000",
            b"-800====",
            b"abc=====",
            b"8=0=====",
            b"========",
            b" 800====",
            b"800\x00\x00\x00\x00\x00",
            b"\xff" * 8,
        ],
    )
    def test_refused(self, server_key, field):
        server = ServerConnection(server_key)
        error = run_until_error(server, field)
        assert str(error) == f"key length field is not a positive integer: {field!r}"
        assert server.data_to_send() == b"0"

    def test_larger_than_the_maximum(self, server_key):
        server = ServerConnection(server_key)
        error = run_until_error(server, b"99999===")
        assert str(error) == "key length 99999 exceeds the maximum of 16384 bytes"
        assert server.data_to_send() == b"0"

    def test_maximum_is_configurable(self, server_key):
        server = ServerConnection(server_key, max_key_length=500)
        assert "exceeds the maximum of 500" in str(run_until_error(server, b"800====="))

    def test_unpadded_full_width_is_accepted(self, server_key):
        server = ServerConnection(server_key)
        server.receive_data(b"00000800")
        assert server.next_event() is NEED_DATA
        assert server.data_to_send() == b"1"

    def test_eof_before_anything(self, server_key):
        server = ServerConnection(server_key)
        error = run_until_error(server, b"", eof=True)
        assert str(error) == (
            "peer closed the connection during the client key length field (step 1): "
            "got 0 of 8 bytes"
        )
        assert server.data_to_send() == b""


class TestClientKey:
    def test_truncated_key(self, peer):
        assert peer.send(Wire.key_length(peer.pem)) == b"1"
        error = run_until_error(peer.server, peer.pem[:100], eof=True)
        assert str(error) == (
            "peer closed the connection during the client key (step 3): got 100 of 451 bytes"
        )
        assert peer.server.data_to_send() == b""

    @pytest.mark.parametrize(
        "key",
        [b"x" * 451, b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n"],
        ids=["garbage", "broken-pem"],
    )
    def test_not_pem(self, peer, key):
        assert peer.send(Wire.key_length(key)) == b"1"
        error = run_until_error(peer.server, key)
        assert str(error).startswith("public key does not load as a PEM RSA key")
        assert peer.server.data_to_send() == b"0"

    def test_not_rsa(self, peer):
        key = Wire.pem(ec.generate_private_key(ec.SECP256R1()).public_key())
        assert peer.send(Wire.key_length(key)) == b"1"
        error = run_until_error(peer.server, key)
        assert "not an RSA public key" in str(error)
        assert peer.server.data_to_send() == b"0"

    @pytest.mark.parametrize("bits", [768, 16392])
    def test_size_out_of_bounds(self, peer, bits):
        # Only the modulus size matters here; cryptography will not generate such keys.
        key = Wire.pem(rsa.RSAPublicNumbers(65537, (1 << (bits - 1)) | 12345).public_key())
        assert peer.send(Wire.key_length(key)) == b"1"
        error = run_until_error(peer.server, key)
        assert str(error) == f"RSA key of {bits} bits is outside 1024..16384"
        assert peer.server.data_to_send() == b"0"


class TestHandshake:
    def test_peer_stops_mid_handshake(self, peer):
        assert peer.send(Wire.key_length(peer.pem)) == b"1"
        assert peer.send(peer.pem)[:1] == b"1"
        error = run_until_error(peer.server, b"", eof=True)
        assert str(error) == (
            "peer closed the connection during the ack of the server key length (step 6): "
            "got 0 of 1 bytes"
        )

    def test_client_refuses_server_key(self, peer):
        assert peer.send(Wire.key_length(peer.pem)) == b"1"
        assert peer.send(peer.pem)[:1] == b"1"
        assert peer.send(b"1")
        error = run_until_error(peer.server, b"0")
        assert str(error) == "peer refused the server key: got b'0' instead of b'1'"

    def test_block_does_not_decrypt(self, peer):
        peer.until_session_key()
        error = run_until_error(peer.server, bytes(range(256)))
        assert str(error) == "session key block does not decrypt with the server key"
        assert peer.server.data_to_send() == b"0"

    def test_block_for_another_key(self, peer, client_key):
        peer.until_session_key()
        error = run_until_error(peer.server, peer.wire.secret_block(client_key.public_key()))
        assert str(error) == "session key block does not decrypt with the server key"
        assert peer.server.data_to_send() == b"0"

    def test_block_of_wrong_size_secret(self, peer, server_key):
        peer.until_session_key()
        block = peer.wire.secret_block(server_key.public_key(), secret=b"k" * 47)
        error = run_until_error(peer.server, block)
        assert str(error) == "session key block decrypts to 47 bytes, not 48"
        assert peer.server.data_to_send() == b"0"

    def test_eof_mid_block(self, peer, server_key):
        peer.until_session_key()
        block = peer.wire.secret_block(server_key.public_key())
        error = run_until_error(peer.server, block[:200], eof=True)
        assert "during the session key block (step 9): got 200 of 256 bytes" in str(error)


class TestRequestFrame:
    def test_wrong_aes_key(self, peer):
        peer.handshake()
        other = Wire(key=b"K" * 32, iv=peer.wire.iv)
        frame, _ = other.json_message(STAT_REQUEST)
        error = run_until_error(peer.server, frame)
        assert str(error).startswith("length frame")
        assert peer.server.data_to_send() == b"0"

    def test_wrong_iv(self, peer):
        """The frame and body share the current IV; a fresh IV misreads the frame."""
        peer.handshake()
        other = Wire(key=peer.wire.key, iv=b"\x00" * 16)
        frame, _ = other.message(b"{}" * 600)
        error = run_until_error(peer.server, frame)
        assert str(error).startswith("length frame")
        assert peer.server.data_to_send() == b"0"

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            (b"abc", "length frame is not a decimal of at most 15 digits: b'abc'"),
            (b"-48", "length frame is not a decimal of at most 15 digits: b'-48'"),
            (b"0", "announced length 0 is not 16 + a positive multiple of 16"),
            (b"16", "announced length 16 is not 16 + a positive multiple of 16"),
            (b"40", "announced length 40 is not 16 + a positive multiple of 16"),
            (b"1048624", "announced length 1048624 exceeds the maximum of 1048576 bytes"),
        ],
    )
    def test_bad_announced_length(self, peer, text, message):
        peer.handshake()
        frame = peer.wire._aes(peer.wire.iv, text)
        error = run_until_error(peer.server, frame)
        assert str(error) == message
        assert peer.server.data_to_send() == b"0"

    def test_frame_cut_midway(self, peer):
        peer.handshake()
        frame, body = peer.wire.json_message(STAT_REQUEST)
        assert peer.send(frame) == b"1"
        error = run_until_error(peer.server, body[:20], eof=True)
        assert str(error) == (
            f"peer closed the connection during the request body: got 20 of {len(body)} bytes"
        )

    def test_length_frame_cut(self, peer):
        peer.handshake()
        frame, _ = peer.wire.json_message(STAT_REQUEST)
        error = run_until_error(peer.server, frame[:9], eof=True)
        assert "during the request length frame: got 9 of 16 bytes" in str(error)

    def test_body_with_bad_padding(self, peer):
        peer.handshake()
        frame, body = peer.wire.json_message(STAT_REQUEST)
        assert peer.send(frame) == b"1"
        # Flip the last byte of the last ciphertext block: its padding no longer checks.
        broken = body[:-17] + bytes([body[-17] ^ 0xFF]) + body[-16:]
        error = run_until_error(peer.server, broken)
        assert str(error).startswith("message body of 48 bytes does not decrypt")

    def test_flood_is_bounded(self, peer):
        peer.handshake()
        peer.server.receive_data(b"\x00" * (2 << 20))
        with pytest.raises(RemoteProtocolError, match="more than any step allows"):
            peer.server.next_event()

    def test_data_after_the_exchange(self, server_key, client_key):
        client = ClientConnection(client_key)
        client.send_request(STAT_REQUEST)
        ex = Exchange(client, ServerConnection(server_key)).run()
        error = run_until_error(ex.server, b"extra")
        assert str(error) == "peer sent 5 unexpected bytes after the exchange ended"


class TestRequestContent:
    """Bodies that decrypt but are not a request: the server can still answer."""

    def answer(self, peer, text: bytes) -> RequestReceived:
        peer.handshake()
        frame, body = peer.wire.message(text)
        assert peer.send(frame) == b"1"
        assert peer.send(body) == b""
        event = peer.events[-1]
        assert isinstance(event, RequestReceived)
        # The response still goes out and reads back on the document side.
        peer.server.send_response(STAT_RESPONSE)
        length = peer.wire.read_length(peer.server.data_to_send())
        assert peer.send(b"1") and length > 16
        return event

    def test_invalid_json(self, peer):
        event = self.answer(peer, b'{"verb": "STAT", ')
        assert event.payload is None
        assert event.error.startswith("invalid JSON: ")

    def test_not_utf8(self, peer):
        event = self.answer(peer, b'{"verb": "\xff\xfe"}')
        assert event.payload is None
        assert event.error.startswith("message is not valid UTF-8")

    def test_deeply_nested(self, peer):
        event = self.answer(peer, b"[" * 200_000 + b"]" * 200_000)
        assert event.payload is None and event.error.startswith("invalid JSON")

    @pytest.mark.parametrize("value", [[1, 2], "STAT", 3, None, True])
    def test_json_not_an_object(self, peer, value):
        event = self.answer(peer, json.dumps(value).encode())
        assert event == RequestReceived(payload=value, error=None)
        assert validate_request(event.payload) == (
            False,
            None,
            {"request": ["must be of dict type"]},
        )


class TestClientSide:
    """ClientConnection against a misbehaving server (bytes from the document side)."""

    def test_server_refuses_key_length(self, client_key):
        client = ClientConnection(client_key)
        assert client.data_to_send() == Wire.key_length(Wire.pem(client_key))
        error = run_until_error(client, b"0")
        assert str(error) == "peer refused the client key length: got b'0' instead of b'1'"

    def test_server_disconnects_at_once(self, client_key):
        """E.g. the deployed server's IP filter: closed before the key exchange."""
        client = ClientConnection(client_key)
        error = run_until_error(client, b"", eof=True)
        assert "during the ack of the key length (step 2): got 0 of 1 bytes" in str(error)

    def test_bad_server_key_length(self, client_key):
        client = ClientConnection(client_key)
        error = run_until_error(client, b"11" + b"-1======")
        assert str(error) == "key length field is not a positive integer: b'-1======'"

    def test_server_key_not_pem(self, client_key):
        client = ClientConnection(client_key)
        error = run_until_error(client, b"11" + b"10======" + b"0123456789")
        assert str(error).startswith("public key does not load as a PEM RSA key")

    def _until_echo(self, client_key, server_key) -> tuple[ClientConnection, bytes]:
        client = ClientConnection(client_key)
        client.send_request(STAT_REQUEST)
        server_pem = Wire.pem(server_key)
        client.receive_data(b"11" + Wire.key_length(server_pem) + server_pem + b"1")
        assert client.next_event() is NEED_DATA
        out = client.data_to_send()
        secret = server_key.decrypt(out[-256:], OAEP_SHA256)
        return client, secret

    def test_server_echoes_another_key(self, client_key, server_key):
        client, secret = self._until_echo(client_key, server_key)
        echo = Wire().secret_block(client_key.public_key())
        error = run_until_error(client, echo)
        assert str(error) == "server echoed a different session key than the one sent"

    def test_echo_does_not_decrypt(self, client_key, server_key):
        client, _ = self._until_echo(client_key, server_key)
        error = run_until_error(client, b"\x01" * 256)
        assert str(error) == "echoed session key does not decrypt with the client key"

    def test_bad_response_length_frame_is_refused(self, client_key, server_key):
        client, secret = self._until_echo(client_key, server_key)
        wire = Wire(secret[:32], secret[32:])
        client.receive_data(wire.secret_block(client_key.public_key()))
        events: list = []
        drain(client, events)
        out = client.data_to_send()
        assert out[:1] == b"1" and isinstance(events[0], HandshakeComplete)
        wire.read_length(out[1:])
        client.receive_data(b"1")
        drain(client, events)
        wire.read_body(client.data_to_send())
        error = run_until_error(client, b"\x00" * 16)
        assert str(error).startswith("length frame")
        assert client.data_to_send() == b"0"

    def test_invalid_json_response(self, client_key, server_key):
        client, secret = self._until_echo(client_key, server_key)
        wire = Wire(secret[:32], secret[32:])
        client.receive_data(wire.secret_block(client_key.public_key()) + b"1")
        drain(client, [])
        wire.read_body(client.data_to_send()[17:])
        frame, body = wire.message(b"<html>")
        client.receive_data(frame + body)
        events: list = []
        drain(client, events)
        assert isinstance(events[-1], ResponseReceived)
        assert events[-1].payload is None and events[-1].error.startswith("invalid JSON")

    def test_server_eof_before_response(self, server_key, client_key):
        client = ClientConnection(client_key, randbytes=seeded_randbytes(1))
        client.send_request(STAT_REQUEST)
        ex = Exchange(client, ServerConnection(server_key), response=STAT_RESPONSE)
        ex.run()
        # Replay the server's bytes but stop before its response frame.
        replay = ClientConnection(client_key, randbytes=seeded_randbytes(1))
        replay.send_request(STAT_REQUEST)
        cut = sum(len(w) for w in ex.server_writes[:5])
        error = run_until_error(replay, ex.server_stream[:cut], eof=True)
        assert "during the response length frame: got 0 of 16 bytes" in str(error)
