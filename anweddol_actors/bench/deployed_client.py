"""A client that speaks the wire protocol as the deployed clients (``anwdlclient`` 4.x) do.

Written from PROTOCOL.md with raw ``cryptography`` primitives, not through the project's
sans-IO ``ClientConnection``: each protocol step is its own small ``sendall()`` and
``TCP_NODELAY`` stays off, so the small writes meet Nagle's algorithm and the server's
delayed ACKs exactly as they do for a deployed client. The benchmarks measure the server
with it beside the project's own client; the tests use it as an independent peer.

Reads are exact (looped ``recv``), every length is bounded and every wait times out. The
private key is passed in: generating an RSA-4096 key per request would swamp the figures.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from anweddol_actors.errors import AnweddolError

_OAEP = OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
# A public key PEM of RSA-16384 is under 3 kB; a response of the built-in verbs under 2 kB.
MAX_KEY_BYTES = 16_384
MAX_MESSAGE_BYTES = 1 << 20


class DeployedClientError(AnweddolError):
    """The server refused a step, broke the protocol, closed early or timed out."""


def _aes(key: bytes, iv: bytes, data: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def _unaes(key: bytes, iv: bytes, data: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(decryptor.update(data) + decryptor.finalize()) + unpadder.finalize()


def _length_field(pem: bytes) -> bytes:
    text = str(len(pem)).encode()
    return text + b"=" * (8 - len(text))


class DeployedClient:
    """One request per connection, as PROTOCOL.md's roles say.

    ``private_key``: the client's RSA key (any size; the deployed clients use 4096 bits).
    ``timeout``: seconds, for the connect and for each read and write.
    """

    def __init__(
        self,
        host: str,
        port: int,
        private_key: rsa.RSAPrivateKey,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.private_key = private_key
        self._pem = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def stat(self, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """The STAT response dict."""
        return self.request("STAT", parameters)

    def create(self, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """The CREATE response dict (its ``data`` holds the container's credentials)."""
        return self.request("CREATE", parameters)

    def destroy(
        self, uuid: str, token: str, parameters: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The DESTROY response dict of the container ``uuid`` with its ``token``."""
        merged = {"container_uuid": uuid, "client_token": token, **(parameters or {})}
        return self.request("DESTROY", merged)

    def request(self, verb: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send ``{"verb": verb, "parameters": parameters}``; the response dict."""
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
                sock.settimeout(self.timeout)
                return self._session(sock, {"verb": verb, "parameters": parameters or {}})
        except (OSError, ValueError) as exc:
            # ValueError: bad padding, a length that is not a number, JSON that does not parse.
            raise DeployedClientError(f"{verb} to {self.host}:{self.port}: {exc}") from exc

    def _session(self, sock: socket.socket, payload: dict[str, Any]) -> dict[str, Any]:
        # 1-4: our public key, announced then sent, each acknowledged.
        sock.sendall(_length_field(self._pem))
        self._expect_ack(sock, "key length")
        sock.sendall(self._pem)
        self._expect_ack(sock, "public key")
        # 5-8: the server's public key.
        length = self._read_length_field(sock)
        sock.sendall(b"1")
        server_key = serialization.load_pem_public_key(self._recv_exact(sock, length))
        if not isinstance(server_key, rsa.RSAPublicKey):
            raise DeployedClientError("the server's key is not an RSA public key")
        sock.sendall(b"1")
        # 9-12: the session key and IV, sent to the server and echoed back to us.
        key, iv = os.urandom(32), os.urandom(16)
        sock.sendall(server_key.encrypt(key + iv, _OAEP))
        self._expect_ack(sock, "session key")
        echo = self.private_key.decrypt(
            self._recv_exact(sock, self.private_key.key_size // 8), _OAEP
        )
        if echo != key + iv:
            raise DeployedClientError("the server echoed another session key")
        sock.sendall(b"1")
        # The request: length frame, ack, body ‖ next IV; both encrypted from the same IV.
        body = _aes(key, iv, json.dumps(payload).encode())
        next_iv = os.urandom(16)
        sock.sendall(_aes(key, iv, str(len(body) + 16).encode()))
        self._expect_ack(sock, "request length")
        sock.sendall(body + next_iv)
        iv = next_iv
        # The response, the mirror image.
        frame = self._recv_exact(sock, 16)
        text = _unaes(key, iv, frame)
        if not text.isdigit() or not 16 < int(text) <= MAX_MESSAGE_BYTES:
            raise DeployedClientError(f"bad response length {text[:20]!r}")
        sock.sendall(b"1")
        data = self._recv_exact(sock, int(text))
        response = json.loads(_unaes(key, iv, data[:-16]))
        if not isinstance(response, dict):
            raise DeployedClientError("the response is not a JSON object")
        return response

    def _expect_ack(self, sock: socket.socket, step: str) -> None:
        ack = self._recv_exact(sock, 1)
        if ack != b"1":
            raise DeployedClientError(f"the server refused the {step} ({ack!r})")

    def _read_length_field(self, sock: socket.socket) -> int:
        text = self._recv_exact(sock, 8).rstrip(b"=")
        if not text.isdigit() or not 0 < int(text) <= MAX_KEY_BYTES:
            raise DeployedClientError(f"bad key length field {text!r}")
        return int(text)

    @staticmethod
    def _recv_exact(sock: socket.socket, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = sock.recv(min(left, 65536))
            if not chunk:
                raise DeployedClientError(f"the server closed with {left} of {n} bytes unread")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
