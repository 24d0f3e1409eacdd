"""A hand-driven protocol peer for the server tests: every step by hand, so a test can stop,
cut or corrupt the exchange anywhere (PROTOCOL.md §1-2)."""

from __future__ import annotations

import json
import os
import socket

from anweddol_actors.protocol.crypto import (
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    load_public_key,
    public_pem,
    rsa_oaep_decrypt,
    rsa_oaep_encrypt,
)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the server closes the connection (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def length_field(n: int | str) -> bytes:
    return str(n).encode().ljust(8, b"=")


class RawPeer:
    def __init__(self, address: tuple, client_key, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(address[:2], timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client_key = client_key
        self.key = os.urandom(32)
        self.iv = os.urandom(16)

    def close(self) -> None:
        self.sock.close()

    def ack(self) -> bytes:
        return recv_exact(self.sock, 1)

    def send_key(self) -> bytes:
        pem = public_pem(self.client_key)
        self.sock.sendall(length_field(len(pem)))
        assert self.ack() == b"1"
        self.sock.sendall(pem)
        return self.ack()

    def receive_server_key(self):
        size = int(recv_exact(self.sock, 8).rstrip(b"="))
        self.sock.sendall(b"1")
        server_key = load_public_key(recv_exact(self.sock, size))
        self.sock.sendall(b"1")
        return server_key

    def handshake(self) -> None:
        assert self.send_key() == b"1"
        server_key = self.receive_server_key()
        self.sock.sendall(rsa_oaep_encrypt(server_key, self.key + self.iv))
        assert self.ack() == b"1"
        echoed = rsa_oaep_decrypt(
            self.client_key, recv_exact(self.sock, self.client_key.key_size // 8)
        )
        assert echoed == self.key + self.iv
        self.sock.sendall(b"1")

    def send_frame(self, plaintext: bytes, *, key: bytes | None = None) -> bytes:
        """Send one framed message; returns the peer's ack of the length frame."""
        key = key or self.key
        body = aes_cbc_encrypt(key, self.iv, plaintext)
        next_iv = os.urandom(16)
        self.sock.sendall(aes_cbc_encrypt(key, self.iv, str(len(body) + 16).encode()))
        ack = self.ack()
        if ack != b"1":
            return ack
        self.sock.sendall(body + next_iv)
        self.iv = next_iv
        return ack

    def receive_frame(self) -> dict:
        size = int(aes_cbc_decrypt(self.key, self.iv, recv_exact(self.sock, 16)))
        self.sock.sendall(b"1")
        data = recv_exact(self.sock, size)
        payload = aes_cbc_decrypt(self.key, self.iv, data[:-16])
        self.iv = data[-16:]
        return json.loads(payload)

    def request(self, verb: str, parameters: dict | None = None) -> dict:
        self.send_frame(json.dumps({"verb": verb, "parameters": parameters or {}}).encode())
        return self.receive_frame()
