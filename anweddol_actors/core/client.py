"""Seed-compatible ``ClientInstance``: the server's side of one client connection.

It owns the socket and a sans-IO :class:`~anweddol_actors.protocol.ServerConnection`, and
does the blocking I/O that the protocol code leaves to its caller: read exactly what the
protocol asks for (the protocol buffers, so short reads are harmless), apply the client
timeout to every wait, and send each turn's bytes in one write (TCP_NODELAY, so a one-byte
acknowledgement is never held back by Nagle's algorithm — PROTOCOL.md §4).

The camelCase names are the seed's (reference/api/client.md); they live only here.
"""

from __future__ import annotations

import hashlib
import socket as _socket
import threading
import time
from typing import Any

from anweddol_actors.core.crypto import AESWrapper, RSAWrapper
from anweddol_actors.protocol import NEED_DATA, RemoteProtocolError, ServerConnection
from anweddol_actors.protocol.events import HandshakeComplete, MessageSent, RequestReceived
from anweddol_actors.protocol.messages import (  # noqa: F401 - the seed exports them here
    RESPONSE_MSG_BAD_AUTH,
    RESPONSE_MSG_BAD_REQ,
    RESPONSE_MSG_INTERNAL_ERROR,
    RESPONSE_MSG_OK,
    RESPONSE_MSG_REFUSED_REQ,
    RESPONSE_MSG_UNAVAILABLE,
    RESPONSE_MSG_UNSPECIFIED,
    make_response,
    validate_request,
)

DEFAULT_STORE_REQUEST = True
DEFAULT_EXCHANGE_KEYS = True
DEFAULT_RECEIVE_FIRST = True

MESSAGE_OK = "1"
MESSAGE_NOK = "0"

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
_RECV_SIZE = 65536


def client_id_for(ip: str) -> str:
    """The seed's client ID: the first 7 hex characters of SHA-256 of the client's IP."""
    return hashlib.sha256(ip.encode()).hexdigest()[:7]


class ClientInstance:
    """One connected client, seen from the server."""

    def __init__(
        self,
        socket: _socket.socket,
        timeout: float | None = None,
        rsa_wrapper: RSAWrapper | None = None,
        aes_wrapper: AESWrapper | None = None,
        exchange_keys: bool = DEFAULT_EXCHANGE_KEYS,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self._socket = socket
        self._timeout = timeout
        self._lock = threading.RLock()
        self._closed = False
        self._creation_timestamp = int(time.time())
        self._stored_request: dict | None = None
        self._handshake_done = False
        self._response_sent = False
        try:
            self._ip = socket.getpeername()[0]
        except OSError:
            self._ip = ""
        self._id = client_id_for(self._ip)
        socket.settimeout(timeout)
        try:
            socket.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not a TCP socket (a socketpair in a test): nothing to tune
        # The server's key pair is shared read-only by every session; everything that is
        # per connection (the peer's key, the AES key and IV chain) lives in the
        # ServerConnection, so concurrent handshakes cannot overwrite each other (PROTOCOL.md §4).
        self._rsa_wrapper = rsa_wrapper if rsa_wrapper is not None else RSAWrapper()
        self._aes_wrapper = aes_wrapper if aes_wrapper is not None else AESWrapper()
        self._connection = ServerConnection(
            self._rsa_wrapper.private_key, max_message_size=max_message_size
        )
        if exchange_keys:
            self.exchangeKeys()

    # -- context manager -------------------------------------------------------------

    def __enter__(self) -> ClientInstance:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._closed:
            self.closeConnection()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self.closeConnection()
        except Exception:
            pass

    # -- getters / setters -------------------------------------------------------------

    def isClosed(self) -> bool:
        return self._closed

    def getSocketDescriptor(self) -> _socket.socket:
        return self._socket

    def getIP(self) -> str:
        return self._ip

    def getID(self) -> str:
        return self._id

    def getCreationTimestamp(self) -> int:
        return self._creation_timestamp

    def getStoredRequest(self) -> dict | None:
        return self._stored_request

    def getRSAWrapper(self) -> RSAWrapper:
        return self._rsa_wrapper

    def getAESWrapper(self) -> AESWrapper:
        return self._aes_wrapper

    def setRSAWrapper(self, rsa_wrapper: RSAWrapper) -> None:
        self._rsa_wrapper = rsa_wrapper

    def setAESWrapper(self, aes_wrapper: AESWrapper) -> None:
        self._aes_wrapper = aes_wrapper

    # -- connection ----------------------------------------------------------------

    def closeConnection(self) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("Client is already closed")
            self._closed = True
            try:
                self._socket.shutdown(_socket.SHUT_RDWR)
            except OSError:
                pass
            self._socket.close()

    def exchangeKeys(self, receive_first: bool = DEFAULT_RECEIVE_FIRST) -> None:
        """Run the key exchange of PROTOCOL.md §1 (the server always receives first)."""
        self._require_open()
        if not receive_first:
            raise ValueError("the server side of the protocol always receives the key first")
        if self._handshake_done:
            raise RuntimeError("Keys were already exchanged with this client")
        self._pump_until(HandshakeComplete)
        self._handshake_done = True

    def recvRequest(self, store_request: bool = DEFAULT_STORE_REQUEST) -> tuple:
        """Receive one request: ``(is_valid, sanitized_request | None, errors | None)``."""
        self._require_open()
        event = self._pump_until(RequestReceived)
        if event.error is not None:
            return (False, None, {"request": [event.error]})
        valid, sanitized, errors = validate_request(event.payload)
        if valid and store_request:
            self._stored_request = sanitized
        return (valid, sanitized, errors)

    def sendResponse(
        self,
        success: bool,
        message: str,
        data: dict | None = None,
        reason: str | None = None,
    ) -> None:
        """Send the one response of this connection."""
        self._require_open()
        if self._response_sent:
            raise RuntimeError("A response was already sent to this client")
        self._connection.send_response(make_response(success, message, data or {}, reason))
        self._pump_until(MessageSent)
        self._response_sent = True

    # -- beyond the seed -------------------------------------------------------------

    @property
    def response_sent(self) -> bool:
        return self._response_sent

    @property
    def handshake_done(self) -> bool:
        return self._handshake_done

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError("Client is closed")

    def _flush(self) -> None:
        out = self._connection.data_to_send()
        if out:
            self._socket.sendall(out)

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
                    data = self._socket.recv(_RECV_SIZE)
                    self._connection.receive_data(data)
                    continue
                self._flush()
                if isinstance(event, event_type):
                    return event
