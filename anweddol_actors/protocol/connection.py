"""The two ends of one wire-protocol connection, as sans-IO state machines.

Theory of operation
-------------------
One TCP connection carries a key exchange, one request and one response (PROTOCOL.md).
Each side is a table of *steps*: a state names the next unit we expect from the peer, how
many bytes it is, and the method that consumes it. ``next_event()`` takes that many bytes
from the receive buffer, runs the step, which may queue bytes for the peer and move to the
next state, and returns an event when there is one. Nothing here touches a socket or a
clock: the caller feeds ``receive_data()``, sends what ``data_to_send()`` returns, and owns
timeouts.

Everything a side can send before it must wait for the peer again is queued together, so
the caller does one write per turn (steps 4+5 and 10+11 on the server, 8+9 and 12+length
frame on the client): the original's many tiny writes met Nagle and delayed ACKs.

States where we wait for our own side (``send_response``/``send_request``) have no step:
``next_event()`` answers ``NEED_DATA`` there. A state missing from the table is an error.

Every failure of the peer raises :class:`RemoteProtocolError` naming what was wrong, after
queueing the ``0`` refusal where the protocol defines one (steps 2, 4, 10, and the ack of a
length frame); the connection then stays failed. Misuse by our own side raises
:class:`LocalProtocolError`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, NoReturn

from cryptography.hazmat.primitives.asymmetric import rsa

from anweddol_actors.protocol import crypto, framing
from anweddol_actors.protocol.errors import LocalProtocolError, RemoteProtocolError
from anweddol_actors.protocol.events import (
    NEED_DATA,
    ConnectionClosed,
    Event,
    HandshakeComplete,
    MessageSent,
    RequestReceived,
    ResponseReceived,
)

__all__ = [
    "DEFAULT_MAX_KEY_LENGTH",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "ClientConnection",
    "ServerConnection",
]

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
# A 16384-bit public key is about 2.9 KB of PEM; anything near this bound is not a key.
DEFAULT_MAX_KEY_LENGTH = 16384
# Room in the receive buffer beyond the largest unit, for acks a peer sends early.
_BUFFER_SLACK = 4096

RandBytes = Callable[[int], bytes]


class _Step:
    """What a state expects from the peer."""

    __slots__ = ("describe", "handler", "size")

    def __init__(self, size: int | str, handler: str, describe: str) -> None:
        self.size = size  # bytes, or the name of an attribute holding them
        self.handler = handler
        self.describe = describe


class _Connection:
    _STEPS: dict[str, _Step] = {}
    _LOCAL_WAIT: frozenset[str] = frozenset()
    _INITIAL: str = ""

    def __init__(self, max_message_size: int, randbytes: RandBytes) -> None:
        if max_message_size < 2 * crypto.AES_BLOCK_SIZE:
            raise ValueError(f"max_message_size must be at least 32, not {max_message_size}")
        self.max_message_size = max_message_size
        self._randbytes = randbytes
        self._state = self._INITIAL
        self._in = bytearray()
        self._out = bytearray()
        self._eof = False
        self._error: str | None = None
        self._aes_key: bytes | None = None
        self._iv: bytes | None = None
        self._body_length = 0  # announced by the last length frame received
        self._pending_body: bytes | None = None  # body ‖ next IV, waiting for the peer's ack
        self._pending_iv: bytes | None = None
        self._peer_pem = b""
        self._peer_key: rsa.RSAPublicKey | None = None
        self._buffer_limit = max(max_message_size, DEFAULT_MAX_KEY_LENGTH) + _BUFFER_SLACK

    # -- public surface -------------------------------------------------------------------

    @property
    def state(self) -> str:
        """Name of the current state (``error`` once a remote error was raised)."""
        return self._state

    @property
    def needs_local_action(self) -> bool:
        """True while the protocol waits for ``send_response``/``send_request``.

        ``next_event()`` answers NEED_DATA then too: act instead of reading more.
        """
        return self._state in self._LOCAL_WAIT

    @property
    def peer_public_key(self) -> rsa.RSAPublicKey | None:
        return self._peer_key

    @property
    def peer_eof(self) -> bool:
        """True once ``receive_data(b"")`` was called."""
        return self._eof

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means the peer closed its side."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("receive_data() called with data after EOF")
        self._in += data

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call, as one chunk."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | Any:
        """The next event, or ``NEED_DATA``; raises RemoteProtocolError if the peer erred."""
        if self._state == "error":
            raise RemoteProtocolError(f"connection already failed: {self._error}")
        try:
            return self._next_event()
        except RemoteProtocolError as exc:
            self._state = "error"
            self._error = str(exc)
            raise

    # -- machinery ------------------------------------------------------------------------

    def _next_event(self) -> Event | Any:
        if len(self._in) > self._buffer_limit:
            self._fail(f"peer sent {len(self._in)} bytes ahead, more than any step allows")
        while True:
            if self._state in self._LOCAL_WAIT:
                return NEED_DATA
            if self._state in ("done", "closed"):
                return self._after_exchange()
            step = self._STEPS.get(self._state)
            if step is None:
                raise LocalProtocolError(f"no step for state {self._state!r}")
            size = step.size if isinstance(step.size, int) else getattr(self, step.size)
            if len(self._in) < size:
                if self._eof:
                    self._fail(
                        f"peer closed the connection during {step.describe}: "
                        f"got {len(self._in)} of {size} bytes"
                    )
                return NEED_DATA
            chunk = bytes(self._in[:size])
            del self._in[:size]
            event = getattr(self, step.handler)(chunk)
            if event is not None:
                return event

    def _after_exchange(self) -> Event | Any:
        if self._in:
            self._fail(f"peer sent {len(self._in)} unexpected bytes after the exchange ended")
        if self._eof:
            self._state = "closed"
            return ConnectionClosed()
        return NEED_DATA

    def _fail(self, message: str, *, refuse: bool = False) -> NoReturn:
        if refuse:
            self._out += framing.REFUSE
        raise RemoteProtocolError(message)

    def _expect_ack(self, chunk: bytes, what: str) -> None:
        if chunk != framing.ACCEPT:
            self._fail(f"peer refused {what}: got {chunk!r} instead of b'1'")

    def _start_message(self, payload: Any, next_state: str) -> None:
        """First half of PROTOCOL.md §2 send(): queue the length frame, hold the body."""
        assert self._aes_key is not None and self._iv is not None
        next_iv = self._randbytes(crypto.AES_BLOCK_SIZE)
        try:
            frame, body = framing.encrypt_message(self._aes_key, self._iv, payload, next_iv)
        except (TypeError, ValueError) as exc:
            raise LocalProtocolError(f"cannot encode the message: {exc}") from exc
        self._out += frame
        self._pending_body, self._pending_iv = body, next_iv
        self._state = next_state

    def _finish_message(self, chunk: bytes, next_state: str) -> MessageSent:
        self._expect_ack(chunk, "our length frame")
        assert self._pending_body is not None
        body, self._pending_body = self._pending_body, None
        self._out += body
        self._iv, self._pending_iv = self._pending_iv, None
        self._state = next_state
        return MessageSent(size=len(body))

    def _read_length_frame(self, chunk: bytes, next_state: str) -> None:
        assert self._aes_key is not None and self._iv is not None
        try:
            self._body_length = framing.parse_length_frame(
                self._aes_key, self._iv, chunk, self.max_message_size
            )
        except ValueError as exc:
            self._fail(str(exc), refuse=True)
        self._out += framing.ACCEPT
        self._state = next_state

    def _read_body(self, chunk: bytes, next_state: str) -> tuple[Any, str | None]:
        assert self._aes_key is not None and self._iv is not None
        try:
            plain, self._iv = framing.decrypt_body(self._aes_key, self._iv, chunk)
        except ValueError as exc:
            self._fail(str(exc))
        self._state = next_state
        return framing.decode_json(plain)

    def _accept_peer_key(self, pem: bytes, *, refuse: bool) -> None:
        try:
            self._peer_key = framing.parse_public_key(pem)
        except ValueError as exc:
            self._fail(str(exc), refuse=refuse)
        self._peer_pem = pem

    def _handshake_complete(self) -> HandshakeComplete:
        assert self._peer_key is not None
        return HandshakeComplete(
            peer_public_key_pem=self._peer_pem, peer_key_size=self._peer_key.key_size
        )


# What a server derives from its own key (its PEM, sent at step 7, and its block size),
# derived once per key rather than once per connection: ``id(key) -> (key, pem, size)``.
# The key itself is held so that its id is not reused; a few keys at most (a server
# changes its key rarely), so the cache is simply emptied if it ever grows.
_OWN_KEYS: dict[int, tuple[rsa.RSAPrivateKey, bytes, int]] = {}
_OWN_KEYS_LIMIT = 16


def _own_key_facts(private_key: rsa.RSAPrivateKey) -> tuple[bytes, int]:
    known = _OWN_KEYS.get(id(private_key))
    if known is not None and known[0] is private_key:
        return known[1], known[2]
    _check_own_key(private_key)
    pem, size = crypto.public_pem(private_key), crypto.rsa_block_size(private_key)
    if len(_OWN_KEYS) >= _OWN_KEYS_LIMIT:
        _OWN_KEYS.clear()
    _OWN_KEYS[id(private_key)] = (private_key, pem, size)
    return pem, size


def _check_own_key(private_key: rsa.RSAPrivateKey) -> None:
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise TypeError(f"private_key must be an RSAPrivateKey, not {type(private_key).__name__}")
    if not crypto.MIN_RSA_KEY_SIZE <= private_key.key_size <= crypto.MAX_RSA_KEY_SIZE:
        raise ValueError(f"RSA key of {private_key.key_size} bits is not supported")


class ServerConnection(_Connection):
    """The server end: receives the key exchange, one request, then sends one response.

    ``private_key`` is only read, so one key object may serve every connection at once.
    """

    _INITIAL = "key_length"
    _LOCAL_WAIT = frozenset({"send_response"})
    _STEPS = {
        "key_length": _Step(8, "_on_key_length", "the client key length field (step 1)"),
        "client_key": _Step("_client_key_length", "_on_client_key", "the client key (step 3)"),
        "server_key_length_ack": _Step(
            1, "_on_server_key_length_ack", "the ack of the server key length (step 6)"
        ),
        "server_key_ack": _Step(1, "_on_server_key_ack", "the ack of the server key (step 8)"),
        "session_key": _Step("_block_size", "_on_session_key", "the session key block (step 9)"),
        "session_key_ack": _Step(1, "_on_session_key_ack", "the ack of the session key (step 12)"),
        "request_length": _Step(16, "_on_request_length", "the request length frame"),
        "request_body": _Step("_body_length", "_on_request_body", "the request body"),
        "response_length_ack": _Step(
            1, "_on_response_length_ack", "the ack of the response length frame"
        ),
    }

    def __init__(
        self,
        private_key: rsa.RSAPrivateKey,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        *,
        max_key_length: int = DEFAULT_MAX_KEY_LENGTH,
        randbytes: RandBytes = crypto.random_bytes,
    ) -> None:
        # Checked and derived once per key (``_own_key_facts``), not per connection.
        self._server_pem, self._block_size = _own_key_facts(private_key)
        super().__init__(max_message_size, randbytes)
        self._private_key = private_key
        self._max_key_length = max_key_length
        self._client_key_length = 0

    def send_response(self, payload: dict[str, Any]) -> None:
        """Queue the response's length frame; the body follows once the client acks it."""
        if self._state != "send_response":
            raise LocalProtocolError(f"cannot send a response in state {self._state!r}")
        self._start_message(payload, "response_length_ack")

    def _on_key_length(self, chunk: bytes) -> None:
        try:
            self._client_key_length = framing.parse_key_length(chunk, self._max_key_length)
        except ValueError as exc:
            self._fail(str(exc), refuse=True)
        self._out += framing.ACCEPT
        self._state = "client_key"

    def _on_client_key(self, chunk: bytes) -> None:
        self._accept_peer_key(chunk, refuse=True)
        self._out += framing.ACCEPT + framing.encode_key_length(len(self._server_pem))
        self._state = "server_key_length_ack"

    def _on_server_key_length_ack(self, chunk: bytes) -> None:
        self._expect_ack(chunk, "the server key length")
        self._out += self._server_pem
        self._state = "server_key_ack"

    def _on_server_key_ack(self, chunk: bytes) -> None:
        self._expect_ack(chunk, "the server key")
        self._state = "session_key"

    def _on_session_key(self, chunk: bytes) -> None:
        try:
            secret = crypto.rsa_oaep_decrypt(self._private_key, chunk)
        except ValueError:
            self._fail("session key block does not decrypt with the server key", refuse=True)
        if len(secret) != framing.SESSION_SECRET_SIZE:
            self._fail(f"session key block decrypts to {len(secret)} bytes, not 48", refuse=True)
        assert self._peer_key is not None
        # Step 11: the deployed server echoes the client's own key and IV back.
        try:
            echo = crypto.rsa_oaep_encrypt(self._peer_key, secret)
        except ValueError as exc:
            self._fail(f"cannot encrypt to the client key: {exc}", refuse=True)
        self._aes_key = secret[: crypto.AES_KEY_SIZE]
        self._iv = secret[crypto.AES_KEY_SIZE :]
        self._out += framing.ACCEPT + echo
        self._state = "session_key_ack"

    def _on_session_key_ack(self, chunk: bytes) -> HandshakeComplete:
        self._expect_ack(chunk, "the session key")
        self._state = "request_length"
        return self._handshake_complete()

    def _on_request_length(self, chunk: bytes) -> None:
        self._read_length_frame(chunk, "request_body")

    def _on_request_body(self, chunk: bytes) -> RequestReceived:
        payload, error = self._read_body(chunk, "send_response")
        return RequestReceived(payload=payload, error=error)

    def _on_response_length_ack(self, chunk: bytes) -> MessageSent:
        return self._finish_message(chunk, "done")


class ClientConnection(_Connection):
    """The client end: runs the key exchange, sends one request, receives one response.

    The first bytes (step 1) are queued at construction. ``send_request`` may be called at
    any time before the request goes out; it is held until the handshake completes.
    Without ``private_key`` a 4096-bit key is generated (about a second of CPU).
    """

    _INITIAL = "key_length_ack"
    _LOCAL_WAIT = frozenset({"send_request"})
    _STEPS = {
        "key_length_ack": _Step(1, "_on_key_length_ack", "the ack of the key length (step 2)"),
        "client_key_ack": _Step(1, "_on_client_key_ack", "the ack of the client key (step 4)"),
        "server_key_length": _Step(
            8, "_on_server_key_length", "the server key length field (step 5)"
        ),
        "server_key": _Step("_server_key_length", "_on_server_key", "the server key (step 7)"),
        "session_key_ack": _Step(1, "_on_session_key_ack", "the ack of the session key (step 10)"),
        "session_key_echo": _Step(
            "_block_size", "_on_session_key_echo", "the echoed session key (step 11)"
        ),
        "request_length_ack": _Step(
            1, "_on_request_length_ack", "the ack of the request length frame"
        ),
        "response_length": _Step(16, "_on_response_length", "the response length frame"),
        "response_body": _Step("_body_length", "_on_response_body", "the response body"),
    }

    def __init__(
        self,
        private_key: rsa.RSAPrivateKey | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        *,
        max_key_length: int = DEFAULT_MAX_KEY_LENGTH,
        randbytes: RandBytes = crypto.random_bytes,
    ) -> None:
        if private_key is None:
            private_key = crypto.generate_private_key(crypto.DEFAULT_RSA_KEY_SIZE)
        _check_own_key(private_key)
        super().__init__(max_message_size, randbytes)
        self._private_key = private_key
        self._block_size = crypto.rsa_block_size(private_key)
        self._max_key_length = max_key_length
        self._server_key_length = 0
        self._request: Any = None
        self._request_pending = False
        self._secret = randbytes(framing.SESSION_SECRET_SIZE)
        self._own_pem = crypto.public_pem(private_key)
        self._out += framing.encode_key_length(len(self._own_pem))

    def send_request(self, payload: dict[str, Any]) -> None:
        """Queue the request (now, or as soon as the handshake completes)."""
        if self._request_pending or self._state in (
            "request_length_ack",
            "response_length",
            "response_body",
            "done",
            "closed",
        ):
            raise LocalProtocolError("only one request can be sent on a connection")
        if self._state == "error":
            raise LocalProtocolError(f"cannot send a request on a failed connection: {self._error}")
        self._request, self._request_pending = payload, True
        if self._state == "send_request":
            self._send_pending_request()

    def _send_pending_request(self) -> None:
        request, self._request, self._request_pending = self._request, None, False
        self._start_message(request, "request_length_ack")

    def _on_key_length_ack(self, chunk: bytes) -> None:
        self._expect_ack(chunk, "the client key length")
        self._out += self._own_pem
        self._state = "client_key_ack"

    def _on_client_key_ack(self, chunk: bytes) -> None:
        self._expect_ack(chunk, "the client key")
        self._state = "server_key_length"

    def _on_server_key_length(self, chunk: bytes) -> None:
        try:
            self._server_key_length = framing.parse_key_length(chunk, self._max_key_length)
        except ValueError as exc:
            self._fail(str(exc))
        self._out += framing.ACCEPT
        self._state = "server_key"

    def _on_server_key(self, chunk: bytes) -> None:
        self._accept_peer_key(chunk, refuse=False)
        assert self._peer_key is not None
        try:
            block = crypto.rsa_oaep_encrypt(self._peer_key, self._secret)
        except ValueError as exc:
            self._fail(f"cannot encrypt to the server key: {exc}")
        self._out += framing.ACCEPT + block
        self._state = "session_key_ack"

    def _on_session_key_ack(self, chunk: bytes) -> None:
        self._expect_ack(chunk, "the session key")
        self._state = "session_key_echo"

    def _on_session_key_echo(self, chunk: bytes) -> HandshakeComplete:
        try:
            echo = crypto.rsa_oaep_decrypt(self._private_key, chunk)
        except ValueError:
            self._fail("echoed session key does not decrypt with the client key")
        # The deployed server sends our own key and IV back (PROTOCOL.md §1, step 11);
        # anything else means the two sides would not share a key.
        if not hmac.compare_digest(echo, self._secret):
            self._fail("server echoed a different session key than the one sent")
        self._aes_key = self._secret[: crypto.AES_KEY_SIZE]
        self._iv = self._secret[crypto.AES_KEY_SIZE :]
        self._out += framing.ACCEPT
        self._state = "send_request"
        if self._request_pending:
            self._send_pending_request()
        return self._handshake_complete()

    def _on_request_length_ack(self, chunk: bytes) -> MessageSent:
        return self._finish_message(chunk, "response_length")

    def _on_response_length(self, chunk: bytes) -> None:
        self._read_length_frame(chunk, "response_body")

    def _on_response_body(self, chunk: bytes) -> ResponseReceived:
        payload, error = self._read_body(chunk, "done")
        return ResponseReceived(payload=payload, error=error)
