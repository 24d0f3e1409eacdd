"""A blocking client: one TCP connection per request, driven by the sans-IO ClientConnection."""

from __future__ import annotations

import socket
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from anweddol_actors.errors import AnweddolError
from anweddol_actors.protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    NEED_DATA,
    ClientConnection,
    RemoteProtocolError,
    ResponseReceived,
    crypto,
)
from anweddol_actors.protocol.messages import (
    REQUEST_VERB_CREATE,
    REQUEST_VERB_DESTROY,
    REQUEST_VERB_STAT,
    make_request,
    validate_response,
)

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "Client",
    "ClientConnectionError",
    "ClientError",
    "ClientProtocolError",
    "ClientTimeout",
    "InvalidResponse",
]

DEFAULT_PORT = 6150
DEFAULT_TIMEOUT = 10.0
_RECV_SIZE = 65536


class ClientError(AnweddolError):
    """Base of every failure of :class:`Client`; the message is one line for a user."""


class ClientConnectionError(ClientError):
    """The server cannot be reached, or the connection broke."""


class ClientTimeout(ClientError):
    """The server did not answer within the timeout."""


class ClientProtocolError(ClientError):
    """The server broke the wire protocol (the cause is a RemoteProtocolError)."""


class InvalidResponse(ClientError):
    """The response is not valid JSON or does not match RESPONSE_SCHEMA."""

    def __init__(self, message: str, errors: Any = None) -> None:
        super().__init__(message)
        self.errors = errors


class Client:
    """Talks to one server; each request opens its own connection (PROTOCOL.md, Roles).

    ``timeout`` bounds the connect and every single wait for the server, not the whole
    exchange. Without ``private_key`` a 4096-bit key is generated at the first request and
    reused by the following ones.
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        timeout: float | None = DEFAULT_TIMEOUT,
        private_key: rsa.RSAPrivateKey | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_message_size = max_message_size
        self._private_key = private_key

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        if self._private_key is None:
            self._private_key = crypto.generate_private_key()
        return self._private_key

    def request(self, verb: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request and return the validated (sanitized) response dict."""
        conn = ClientConnection(self.private_key, self.max_message_size)
        conn.send_request(make_request(verb, parameters))
        where = f"{self.host}:{self.port}"
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except TimeoutError:
            raise ClientTimeout(f"cannot connect to {where}: timed out") from None
        except OSError as exc:
            raise ClientConnectionError(f"cannot connect to {where}: {_reason(exc)}") from None
        with sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                event = self._exchange(sock, conn)
            except RemoteProtocolError as exc:
                # Let the server see our refusal byte, if the step had one, before closing.
                _send_quietly(sock, conn.data_to_send())
                raise ClientProtocolError(f"protocol error from {where}: {exc}") from exc
            except TimeoutError:
                raise ClientTimeout(
                    f"{where} did not answer within {self.timeout} s (state {conn.state})"
                ) from None
            except OSError as exc:
                raise ClientConnectionError(
                    f"connection to {where} failed: {_reason(exc)}"
                ) from None
        if event.error is not None:
            raise InvalidResponse(f"{where} sent an unreadable response: {event.error}")
        ok, response, errors = validate_response(event.payload)
        if not ok:
            raise InvalidResponse(f"{where} sent a malformed response: {errors}", errors)
        assert response is not None
        return response

    @staticmethod
    def _exchange(sock: socket.socket, conn: ClientConnection) -> ResponseReceived:
        while True:
            event = conn.next_event()
            if isinstance(event, ResponseReceived):
                return event
            if event is NEED_DATA:
                # Everything queued goes out in one write before we wait again.
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
                conn.receive_data(sock.recv(_RECV_SIZE))

    def stat(self, access_token: str | None = None) -> dict[str, Any]:
        return self.request(REQUEST_VERB_STAT, _with_token({}, access_token))

    def create(self, access_token: str | None = None) -> dict[str, Any]:
        return self.request(REQUEST_VERB_CREATE, _with_token({}, access_token))

    def destroy(
        self, container_uuid: str, client_token: str, access_token: str | None = None
    ) -> dict[str, Any]:
        parameters = {"container_uuid": container_uuid, "client_token": client_token}
        return self.request(REQUEST_VERB_DESTROY, _with_token(parameters, access_token))


def _with_token(parameters: dict[str, Any], access_token: str | None) -> dict[str, Any]:
    if access_token is not None:
        parameters["access_token"] = access_token
    return parameters


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    if not data:
        return
    try:
        sock.sendall(data)
    except OSError:
        pass
