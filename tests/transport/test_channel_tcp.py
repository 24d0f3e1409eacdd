"""The server's channel on real loopback TCP, against a client written as deployed clients
are: each protocol step its own small ``send()``, Nagle left on (no TCP_NODELAY).

Such a client writes two steps back to back twice per exchange; the second waits until the
first is acknowledged, so the channel must acknowledge at once (TCP_QUICKACK re-armed
before each wait) and never hold its own small writes (TCP_NODELAY)."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))

from protocol_support import client_key, server_key  # noqa: E402, F401 (fixtures)

from anweddol_actors.protocol import crypto, framing  # noqa: E402
from anweddol_actors.protocol.messages import RESPONSE_MSG_BAD_REQ  # noqa: E402
from anweddol_actors.transport.channel import ClientChannel  # noqa: E402
from tests.server.rawpeer import recv_exact  # noqa: E402

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's"
)

_WAIT = 10.0


class DeployedClient:
    """A client as deployed: one ``sendall`` per step, Nagle on."""

    def __init__(self, port: int, key) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=_WAIT)
        assert self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        self.key = key
        self.aes, self.iv = os.urandom(32), os.urandom(16)

    def send_key_length(self) -> bytes:
        self.pem = crypto.public_pem(self.key)
        self.sock.sendall(framing.encode_key_length(len(self.pem)))
        return recv_exact(self.sock, 1)

    def finish_handshake(self) -> None:
        self.sock.sendall(self.pem)
        assert recv_exact(self.sock, 1) == b"1"
        length = int(recv_exact(self.sock, 8).rstrip(b"="))
        self.sock.sendall(b"1")
        server_public = crypto.load_public_key(recv_exact(self.sock, length))
        self.sock.sendall(b"1")  # then at once the session key: two writes back to back
        self.sock.sendall(crypto.rsa_oaep_encrypt(server_public, self.aes + self.iv))
        assert recv_exact(self.sock, 1) == b"1"
        echo = crypto.rsa_oaep_decrypt(self.key, recv_exact(self.sock, self.key.key_size // 8))
        assert echo == self.aes + self.iv
        self.sock.sendall(b"1")  # and again: the ack of the echo, then the request's frame

    def ask(self, request: dict) -> dict:
        next_iv = os.urandom(16)
        frame, body = framing.encrypt_message(self.aes, self.iv, request, next_iv)
        self.sock.sendall(frame)
        assert recv_exact(self.sock, 1) == b"1"
        self.sock.sendall(body)
        self.iv = next_iv
        length = framing.parse_length_frame(self.aes, self.iv, recv_exact(self.sock, 16), 1 << 20)
        self.sock.sendall(b"1")
        plain, self.iv = framing.decrypt_body(self.aes, self.iv, recv_exact(self.sock, length))
        response, error = framing.decode_json(plain)
        assert error is None
        assert self.sock.recv(1) == b""  # the server closes after its response
        return response

    def close(self) -> None:
        self.sock.close()


class ServerSide:
    """A listening socket whose one accepted connection a channel serves on a thread."""

    def __init__(self, key) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.key = key
        self.channel: ClientChannel | None = None
        self.accepted = threading.Event()
        self.received: tuple | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            sock, _ = self.listener.accept()
            self.channel = ClientChannel(sock, self.key, timeout=_WAIT)
            self.accepted.set()
            self.channel.exchange_keys()
            self.received = self.channel.receive_request()
            valid, request, errors = self.received
            if valid:
                self.channel.send_response(True, "OK", {"version": "test", "uptime": 1})
            else:
                self.channel.send_response(False, RESPONSE_MSG_BAD_REQ, reason=str(errors))
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.accepted.set()
            if self.channel is not None:
                self.channel.close_quietly()

    def close(self) -> None:
        self.listener.close()
        self.thread.join(_WAIT)
        assert not self.thread.is_alive()


@pytest.fixture
def server(server_key):  # noqa: F811 (the fixture of protocol_support)
    side = ServerSide(server_key)
    yield side
    side.close()


def test_accepted_socket_gets_nodelay(server, client_key):  # noqa: F811
    client = DeployedClient(server.port, client_key)
    try:
        assert server.accepted.wait(_WAIT) and server.channel is not None
        assert server.channel.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        client.close()


def test_each_wait_rearms_quickack(server, client_key):  # noqa: F811
    """Once the channel answered (Linux then delays its ACKs: "pingpong" mode), it arms
    TCP_QUICKACK again before it waits for the next step."""
    client = DeployedClient(server.port, client_key)
    try:
        assert client.send_key_length() == b"1"
        assert server.channel is not None
        sock = server.channel.socket
        deadline = time.monotonic() + _WAIT
        while sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) != 1:
            assert time.monotonic() < deadline, "TCP_QUICKACK not armed for the next wait"
            time.sleep(0.01)
    finally:
        client.close()


def test_deployed_style_client_gets_its_answer(server, client_key):  # noqa: F811
    client = DeployedClient(server.port, client_key)
    try:
        assert client.send_key_length() == b"1"
        client.finish_handshake()
        response = client.ask({"verb": "STAT", "parameters": {}})
    finally:
        client.close()
    assert server.error is None
    assert response == {"success": True, "message": "OK", "data": {"version": "test", "uptime": 1}}
    assert server.received == (True, {"verb": "STAT", "parameters": {}}, None)


def test_deployed_style_client_gets_a_bad_request_answer(server, client_key):  # noqa: F811
    client = DeployedClient(server.port, client_key)
    try:
        assert client.send_key_length() == b"1"
        client.finish_handshake()
        response = client.ask({"verb": "stat", "parameters": {"x": "y"}})
    finally:
        client.close()
    assert server.error is None
    assert response["success"] is False
    assert response["message"].startswith(RESPONSE_MSG_BAD_REQ)
    assert "verb" in response["message"]
    assert server.received is not None and server.received[0] is False
    json.dumps(response)  # what the client got is plain JSON data
