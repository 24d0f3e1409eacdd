"""Seed-compatible ``ClientInstance``: the server's side of one client connection.

A thin wrapper over :class:`~anweddol_actors.transport.ClientChannel`, which owns the
socket and the protocol. The camelCase names are the seed's (reference/api/client.md);
they live only here.
"""

from __future__ import annotations

import socket as _socket

from anweddol_actors.core.crypto import AESWrapper, RSAWrapper
from anweddol_actors.protocol.messages import (  # noqa: F401 - the seed exports them here
    RESPONSE_MSG_BAD_AUTH,
    RESPONSE_MSG_BAD_REQ,
    RESPONSE_MSG_INTERNAL_ERROR,
    RESPONSE_MSG_OK,
    RESPONSE_MSG_REFUSED_REQ,
    RESPONSE_MSG_UNAVAILABLE,
    RESPONSE_MSG_UNSPECIFIED,
)
from anweddol_actors.transport.channel import ClientChannel, client_id_for  # noqa: F401

DEFAULT_STORE_REQUEST = True
DEFAULT_EXCHANGE_KEYS = True
DEFAULT_RECEIVE_FIRST = True

MESSAGE_OK = "1"
MESSAGE_NOK = "0"

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20


class ClientInstance:
    """One connected client, seen from the server."""

    def __init__(
        self,
        socket: _socket.socket | None,
        timeout: float | None = None,
        rsa_wrapper: RSAWrapper | None = None,
        aes_wrapper: AESWrapper | None = None,
        exchange_keys: bool = DEFAULT_EXCHANGE_KEYS,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        channel: ClientChannel | None = None,
    ) -> None:
        """``channel``: wrap a channel the engine already runs (the objects handed to
        handlers); otherwise a new channel is made over ``socket``, as in the seed."""
        if channel is None:
            if socket is None:
                raise ValueError("a socket is required")
            rsa_wrapper = rsa_wrapper if rsa_wrapper is not None else RSAWrapper()
            channel = ClientChannel(
                socket, rsa_wrapper.private_key, timeout, max_message_size=max_message_size
            )
        self._channel = channel
        self._rsa_wrapper = rsa_wrapper
        self._aes_wrapper = aes_wrapper if aes_wrapper is not None else AESWrapper()
        if exchange_keys and not channel.handshake_done:
            self.exchangeKeys()

    @property
    def channel(self) -> ClientChannel:
        return self._channel

    # -- context manager -------------------------------------------------------------

    def __enter__(self) -> ClientInstance:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._channel.close_quietly()

    # -- getters / setters -------------------------------------------------------------

    def isClosed(self) -> bool:
        return self._channel.closed

    def getSocketDescriptor(self) -> _socket.socket:
        return self._channel.socket

    def getIP(self) -> str:
        return self._channel.ip

    def getID(self) -> str:
        return self._channel.id

    def getCreationTimestamp(self) -> int:
        return self._channel.created_at

    def getStoredRequest(self) -> dict | None:
        return self._channel.stored_request

    def getRSAWrapper(self) -> RSAWrapper:
        if self._rsa_wrapper is None:
            self._rsa_wrapper = RSAWrapper(generate_key_pair=False)
            self._rsa_wrapper.private_key = self._channel.private_key
            self._rsa_wrapper.public_key = self._channel.private_key.public_key()
        return self._rsa_wrapper

    def getAESWrapper(self) -> AESWrapper:
        return self._aes_wrapper

    def setRSAWrapper(self, rsa_wrapper: RSAWrapper) -> None:
        self._rsa_wrapper = rsa_wrapper

    def setAESWrapper(self, aes_wrapper: AESWrapper) -> None:
        self._aes_wrapper = aes_wrapper

    # -- connection ----------------------------------------------------------------

    def closeConnection(self) -> None:
        self._channel.close()

    def exchangeKeys(self, receive_first: bool = DEFAULT_RECEIVE_FIRST) -> None:
        """Run the key exchange of PROTOCOL.md §1 (the server always receives first)."""
        if not receive_first:
            raise ValueError("the server side of the protocol always receives the key first")
        self._channel.exchange_keys()

    def recvRequest(self, store_request: bool = DEFAULT_STORE_REQUEST) -> tuple:
        """Receive one request: ``(is_valid, sanitized_request | None, errors | None)``."""
        return self._channel.receive_request(store_request)

    def sendResponse(
        self,
        success: bool,
        message: str,
        data: dict | None = None,
        reason: str | None = None,
    ) -> None:
        """Send the one response of this connection."""
        self._channel.send_response(success, message, data, reason)

    # -- beyond the seed -------------------------------------------------------------

    @property
    def response_sent(self) -> bool:
        return self._channel.response_sent

    @property
    def handshake_done(self) -> bool:
        return self._channel.handshake_done
