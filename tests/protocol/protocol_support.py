"""Test support: an independent encoding of PROTOCOL.md and drivers for the connections.

``Wire`` builds the peer's bytes straight from ``cryptography`` (not from our protocol
package), so that tests check the connections against the document rather than against
themselves.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from anweddol_actors.protocol import (
    NEED_DATA,
    ClientConnection,
    ConnectionClosed,
    RequestReceived,
    ResponseReceived,
    ServerConnection,
)

OAEP_SHA256 = OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
STAT_REQUEST = {"verb": "STAT", "parameters": {}}
UUID = "3f2b8c1e-9d4a-4f6b-8e2c-1a2b3c4d5e6f"
TOKEN = "aZ09-_" * 42 + "abc"  # 255 characters
CREATE_DATA = {
    "container_uuid": UUID,
    "client_token": TOKEN,
    "container_iso_sha256": "ab" * 32,
    "container_username": "user_01234",
    "container_password": "Pass" * 30,
    "container_listen_port": 10022,
}
STAT_RESPONSE = {"success": True, "message": "OK", "data": {"version": "1.0", "uptime": 42}}

Chunker = Callable[[bytes], Iterable[bytes]]


def rsa_2048() -> rsa.RSAPrivateKey:
    """2048 bits keeps the suites fast; one test runs 4096 on its own."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def server_key() -> rsa.RSAPrivateKey:
    return rsa_2048()


@pytest.fixture(scope="session")
def client_key() -> rsa.RSAPrivateKey:
    return rsa_2048()


def whole(data: bytes) -> Iterator[bytes]:
    if data:
        yield data


def bytewise(data: bytes) -> Iterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]


def seeded_randbytes(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


class Wire:
    """PROTOCOL.md spelled out with raw primitives: one side's view of a session."""

    def __init__(self, key: bytes | None = None, iv: bytes | None = None) -> None:
        self.key = key if key is not None else os.urandom(32)
        self.iv = iv if iv is not None else os.urandom(16)

    @staticmethod
    def pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> bytes:
        public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @staticmethod
    def load_public(pem: bytes) -> rsa.RSAPublicKey:
        key = serialization.load_pem_public_key(pem)
        assert isinstance(key, rsa.RSAPublicKey)
        return key

    @staticmethod
    def oaep() -> OAEP:
        return OAEP_SHA256

    @staticmethod
    def key_length(pem: bytes) -> bytes:
        text = str(len(pem)).encode()
        return text + b"=" * (8 - len(text))

    def secret_block(self, peer: rsa.RSAPublicKey, secret: bytes | None = None) -> bytes:
        return peer.encrypt(self.key + self.iv if secret is None else secret, OAEP_SHA256)

    def _aes(self, iv: bytes, data: bytes) -> bytes:
        padder = padding.PKCS7(128).padder()
        padded = padder.update(data) + padder.finalize()
        encryptor = Cipher(algorithms.AES(self.key), modes.CBC(iv)).encryptor()
        return encryptor.update(padded) + encryptor.finalize()

    def _unaes(self, iv: bytes, data: bytes) -> bytes:
        decryptor = Cipher(algorithms.AES(self.key), modes.CBC(iv)).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(decryptor.update(data) + decryptor.finalize()) + unpadder.finalize()

    def message(self, text: bytes, next_iv: bytes | None = None) -> tuple[bytes, bytes]:
        """``(length frame, body ‖ next_iv)`` of raw plaintext; advances the IV chain."""
        next_iv = next_iv if next_iv is not None else os.urandom(16)
        body = self._aes(self.iv, text)
        frame = self._aes(self.iv, str(len(body) + 16).encode())
        self.iv = next_iv
        return frame, body + next_iv

    def json_message(self, payload: Any) -> tuple[bytes, bytes]:
        return self.message(json.dumps(payload).encode())

    def read_length(self, frame: bytes) -> int:
        return int(self._unaes(self.iv, frame))

    def read_body(self, data: bytes) -> Any:
        plain = self._unaes(self.iv, data[:-16])
        self.iv = data[-16:]
        return json.loads(plain)


def drain(conn: Any, events: list, response: Any = STAT_RESPONSE) -> None:
    """Collect events until NEED_DATA, answering a request with ``response``."""
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return
        events.append(event)
        if isinstance(event, RequestReceived) and response is not None:
            conn.send_response(response)
        if isinstance(event, ConnectionClosed):
            return


def feed(conn: Any, data: bytes, chunker: Chunker, events: list, response: Any = STAT_RESPONSE):
    for chunk in chunker(data):
        conn.receive_data(chunk)
        drain(conn, events, response)


class Exchange:
    """Both ends in memory, with a record of every write (one per turn) of each side."""

    def __init__(
        self,
        client: ClientConnection,
        server: ServerConnection,
        chunker: Chunker = whole,
        response: Any = STAT_RESPONSE,
    ) -> None:
        self.client, self.server = client, server
        self.chunker, self.response = chunker, response
        self.client_events: list = []
        self.server_events: list = []
        self.client_writes: list[bytes] = []
        self.server_writes: list[bytes] = []

    def run(self, max_turns: int = 50) -> Exchange:
        for _ in range(max_turns):
            drain(self.client, self.client_events)
            out = self.client.data_to_send()
            if out:
                self.client_writes.append(out)
                feed(self.server, out, self.chunker, self.server_events, self.response)
            out = self.server.data_to_send()
            if out:
                self.server_writes.append(out)
                feed(self.client, out, self.chunker, self.client_events)
            if any(isinstance(e, ResponseReceived) for e in self.client_events):
                return self
        raise AssertionError("exchange did not finish")

    def close(self) -> Exchange:
        self.server.receive_data(b"")
        drain(self.server, self.server_events)
        self.client.receive_data(b"")
        drain(self.client, self.client_events)
        return self

    @property
    def client_stream(self) -> bytes:
        return b"".join(self.client_writes)

    @property
    def server_stream(self) -> bytes:
        return b"".join(self.server_writes)
