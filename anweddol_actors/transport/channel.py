"""One client's connection: its socket driven through the sans-IO protocol.

The protocol code (:class:`~anweddol_actors.protocol.ServerConnection`) only turns bytes
into events; this class does the blocking I/O it leaves to its caller: read what the
protocol asks for (it buffers, so short reads are harmless), bound every wait by the
client timeout and, until the request is complete, by the request deadline, and send
each turn's bytes in one write (TCP_NODELAY, so a one-byte acknowledgement is never held
back by Nagle's algorithm — PROTOCOL.md §4).

The peer's side matters as much: deployed clients write each step with its own small
``send()`` and leave Nagle on, so a second write waits until the first is acknowledged.
Twice per exchange the client writes two steps back to back (the ack of our key, then the
session key; the ack of the echo, then the request's length frame) while we have nothing
to answer the first with, and Linux delays that bare ACK (up to 40 ms: the delayed-ACK
"pingpong" mode it enters once we reply quickly). So every wait re-arms ``TCP_QUICKACK``
before it blocks: the kernel acknowledges what arrives at once, from its own softirq,
without waiting for this thread. Linux clears the flag again as the connection goes on,
hence once per wait rather than once per socket.

The client timeout bounds one wait and restarts with every byte received; the request
deadline does not restart: a client that trickles one byte just inside the timeout is cut
when the deadline passes, with :class:`RequestDeadlinePassed` (a ``TimeoutError``, so it
takes the timed-out client's path through the session). With no client timeout (None:
``server.timeout: null``) the deadline alone bounds the waits for the request, and its
length bounds each wait after it.

The seed's ``ClientInstance`` (``core/client.py``) is a thin wrapper over a channel.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from anweddol_actors.errors import AnweddolError
from anweddol_actors.protocol import NEED_DATA, RemoteProtocolError, ServerConnection
from anweddol_actors.protocol.connection import DEFAULT_MAX_MESSAGE_SIZE
from anweddol_actors.protocol.events import HandshakeComplete, MessageSent, RequestReceived
from anweddol_actors.protocol.messages import make_response, validate_request

_RECV_SIZE = 65536

__all__ = [
    "ChannelClosed",
    "ClientChannel",
    "RequestDeadlinePassed",
    "client_id_for",
    "take_request",
]


class ChannelClosed(AnweddolError, RuntimeError):
    """The channel was used after it was closed, or used twice where the protocol allows once."""


class RequestDeadlinePassed(AnweddolError, TimeoutError):
    """The client did not complete its request within the request deadline."""


def take_request(
    channel: Any, payload: Any, error: str | None, store: bool
) -> tuple[bool, dict | None, dict | None]:
    """A received request judged the one way of both transports: ``(is_valid, sanitized |
    None, errors | None)``. ``error`` says why the bytes could not be read as a request
    (it is then malformed); a valid request is kept as ``channel.stored_request`` when
    ``store`` is set."""
    if error is not None:
        return (False, None, {"request": [error]})
    valid, sanitized, errors = validate_request(payload)
    if valid and store:
        channel.stored_request = sanitized
    return (valid, sanitized, errors)


def client_id_for(ip: str) -> str:
    """The seed's client ID: the first 7 hex characters of SHA-256 of the client's IP."""
    return hashlib.sha256(ip.encode()).hexdigest()[:7]


# Linux only; elsewhere the delayed-ACK interplay stays (the exchange is still correct).
_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def _tune_tcp(sock: socket.socket) -> bool:
    """Set TCP_NODELAY on an accepted socket; False when it is not TCP (a socketpair)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        return False
    return _TCP_QUICKACK is not None


def _quickack(sock: socket.socket) -> None:
    """Acknowledge at once what arrives next (see the module docstring)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
    except OSError:
        pass  # the peer is gone: the recv that follows says so


class ClientChannel:
    """The server's end of one client connection."""

    def __init__(
        self,
        sock: socket.socket,
        private_key: rsa.RSAPrivateKey,
        timeout: float | None = None,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        request_deadline: float | None = None,
        accepted_at: float | None = None,
    ) -> None:
        """``request_deadline``: seconds from ``accepted_at`` (``time.monotonic()``; now
        when None) to the complete request; None for no deadline (the seed's behaviour)."""
        self.socket = sock
        self.timeout = timeout
        self.created_at = int(time.time())
        self.stored_request: dict | None = None
        self.handshake_done = False
        self.response_sent = False
        # What was sent, ``(success, message, data)``, once it was: the request log line
        # names its outcome (engine/session.py).
        self.response: tuple[bool, str, dict] | None = None
        self._closed = False
        self._lock = threading.RLock()
        try:
            self.ip = sock.getpeername()[0]
        except OSError:
            self.ip = ""
        self.id = client_id_for(self.ip)
        sock.settimeout(timeout)
        # Whether the socket is TCP: only then are the per-wait TCP_QUICKACK calls made.
        self._tcp = _tune_tcp(sock)
        # The key pair is shared read-only by every session; everything per connection (the
        # peer's key, the AES key and IV chain) lives in the ServerConnection, so concurrent
        # handshakes cannot overwrite each other (PROTOCOL.md §4).
        self.private_key = private_key
        self._connection = ServerConnection(private_key, max_message_size=max_message_size)
        self._request_received = False
        self._deadline: float | None = None
        self._deadline_seconds: float | None = None
        if request_deadline is not None:
            self.set_request_deadline(request_deadline, accepted_at)

    def set_request_deadline(self, seconds: float, since: float | None = None) -> None:
        """Bound the time until the request is complete: ``seconds`` from ``since``
        (``time.monotonic()``; now when None). No effect once the request was received."""
        if self._request_received:
            return
        start = time.monotonic() if since is None else since
        self._deadline_seconds = seconds
        self._deadline = start + seconds

    @property
    def request_deadline(self) -> float | None:
        """The monotonic time the request must be complete by, or None."""
        return self._deadline

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Shut the socket down; raises ChannelClosed when it already was (the seed's rule)."""
        with self._lock:
            if self._closed:
                raise ChannelClosed("Client is already closed")
            self._closed = True
            try:
                self.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.socket.close()

    def close_quietly(self) -> None:
        if not self._closed:
            try:
                self.close()
            except ChannelClosed:
                pass

    def exchange_keys(self) -> None:
        """Run the key exchange of PROTOCOL.md §1 (the server always receives first)."""
        self._require_open()
        if self.handshake_done:
            raise ChannelClosed("Keys were already exchanged with this client")
        self._pump_until(HandshakeComplete)
        self.handshake_done = True

    def receive_request(self, store: bool = True) -> tuple[bool, dict | None, dict | None]:
        """Receive one request: ``(is_valid, sanitized_request | None, errors | None)``."""
        self._require_open()
        event = self._pump_until(RequestReceived)
        # The request is complete (valid or not): from here on only the timeout applies.
        self._request_received = True
        self._deadline = None
        self.socket.settimeout(self._after_request_timeout())
        return take_request(self, event.payload, event.error, store)

    def send_response(
        self, success: bool, message: str, data: dict | None = None, reason: str | None = None
    ) -> None:
        """Send the one response of this connection.

        Returns once the client has acknowledged the length frame and the body is written
        (PROTOCOL.md §2): a CREATE counts as delivered only then.
        """
        self._require_open()
        if self.response_sent:
            raise ChannelClosed("A response was already sent to this client")
        self._connection.send_response(make_response(success, message, data or {}, reason))
        self._pump_until(MessageSent)
        self.response_sent = True
        self.response = (success, message, data or {})

    def _require_open(self) -> None:
        if self._closed:
            raise ChannelClosed("Client is closed")

    def _flush(self) -> None:
        out = self._connection.data_to_send()
        if out:
            self.socket.sendall(out)

    def _after_request_timeout(self) -> float | None:
        """Each wait's bound once the request is in: the client timeout; with none
        (``server.timeout: null``), the request deadline's length, so that a client that
        never acknowledges the response cannot hold the session for ever."""
        return self.timeout if self.timeout is not None else self._deadline_seconds

    def _bound_wait(self) -> None:
        """The socket's timeout for the next wait: the client timeout, cut short by the
        request deadline when that comes first."""
        if self._deadline is None:
            return
        self._check_deadline()
        left = self._deadline - time.monotonic()
        self.socket.settimeout(left if self.timeout is None else min(self.timeout, left))

    def _check_deadline(self) -> None:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise RequestDeadlinePassed(
                f"request not complete within the request deadline ({self._deadline_seconds:g} s)"
            )

    def _pump_until(self, event_type: type) -> Any:
        """Feed the socket to the protocol until it yields ``event_type``.

        A remote protocol error still sends the refusal the protocol queued (``0``) before
        it propagates: the peer learns why the connection ends where the protocol allows.
        """
        with self._lock:
            while True:
                try:
                    event = self._connection.next_event()
                except RemoteProtocolError:
                    try:
                        self._flush()
                    except OSError:
                        pass
                    raise
                if event is NEED_DATA:
                    self._flush()
                    self._bound_wait()
                    if self._tcp:
                        _quickack(self.socket)
                    try:
                        data = self.socket.recv(_RECV_SIZE)
                    except TimeoutError:
                        self._check_deadline()
                        raise
                    self._connection.receive_data(data)
                    continue
                self._flush()
                if isinstance(event, event_type):
                    return event
