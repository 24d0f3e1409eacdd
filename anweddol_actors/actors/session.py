"""Client sessions: one per connection, from the accepted socket to the closed one.

The flow mirrors the seed server's handling of a client (accept event → key exchange →
one request → its handler → close), but every step is a journalled transition of the
session's machine, and the whole flow runs on the session's own thread: the listener only
accepts, so a client that connects and says nothing delays nobody (PROTOCOL.md §4).
"""

from __future__ import annotations

import logging
import socket
import traceback
import uuid
from typing import TYPE_CHECKING

import pykka

from anweddol_actors.core.client import (
    RESPONSE_MSG_BAD_REQ,
    RESPONSE_MSG_INTERNAL_ERROR,
    ClientInstance,
)
from anweddol_actors.engine.events import (
    CLIENT_CLOSED_BY_HANDLER,
    CONTEXT_ERROR,
    CONTEXT_HANDLE_END,
    CONTEXT_NORMAL_PROCESS,
    EVENT_CLIENT_CLOSED,
    EVENT_CLIENT_INITIALIZED,
    EVENT_CONNECTION_ACCEPTED,
    EVENT_MALFORMED_REQUEST,
    EVENT_REQUEST,
    EVENT_RUNTIME_ERROR,
    EVENT_UNHANDLED_VERB,
)
from anweddol_actors.lifecycle import Lifecycle

if TYPE_CHECKING:
    from anweddol_actors.engine.engine import Engine

log = logging.getLogger(__name__)


class Session:
    """The flow of one client connection. Runs on one thread from start to end."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.id = uuid.uuid4().hex
        self.lifecycle = Lifecycle("session", self.id, engine.journal)
        self.client: ClientInstance | None = None

    # -- entry points --------------------------------------------------------------

    def serve_socket(self, sock: socket.socket, address: tuple) -> None:
        """Handle a freshly accepted socket: accept event, key exchange, then the request."""
        engine = self.engine
        try:
            engine.fire(EVENT_CONNECTION_ACCEPTED, CONTEXT_NORMAL_PROCESS, {"client_socket": sock})
            if sock.fileno() == -1:
                # The seed's way to refuse a client: the handler closed the raw socket.
                self.lifecycle.fire("close", details={"reason": "refused on connection"})
                self.lifecycle.fire("destroy")
                return
            self.lifecycle.fire("start", data={"peer": address[0] if address else ""})
            self.client = ClientInstance(
                sock,
                engine.client_timeout,
                engine.rsa_wrapper,
                exchange_keys=False,
                max_message_size=engine.max_message_size,
            )
            self.client.exchangeKeys()
        except Exception as exc:
            self._fail(exc, {"client_socket": sock})
            _close_quietly(sock)
            return
        self._handle_initialized()

    def serve_client(self, client: ClientInstance) -> None:
        """Handle a client whose keys were exchanged by the caller (seed ``handleClient``)."""
        self.client = client
        try:
            self.lifecycle.fire("start", data={"peer": client.getIP()})
            if not client.handshake_done and not client.isClosed():
                client.exchangeKeys()
        except Exception as exc:
            self._fail(exc, {"client_instance": client})
            return
        self._handle_initialized()

    # -- the flow ----------------------------------------------------------------------

    def _handle_initialized(self) -> None:
        client = self.client
        assert client is not None
        try:
            self._handle_request(client)
        except Exception as exc:
            self._fail(exc, {"client_instance": client})
            return
        self._end()

    def _handle_request(self, client: ClientInstance) -> None:
        """From the finished key exchange to the response; returns early when a handler
        closed the client (the seed's way to end the handling)."""
        data = {"client_instance": client}
        self.lifecycle.fire("handshake")
        if self._fire(EVENT_CLIENT_INITIALIZED, CONTEXT_NORMAL_PROCESS, data):
            return
        valid, request, errors = client.recvRequest()
        self.lifecycle.fire(
            "request",
            details={"verb": request["verb"]} if valid else {"malformed": True},
        )
        if not valid:
            malformed = {"client_instance": client, "errors_dict": errors}
            if not self._fire(EVENT_MALFORMED_REQUEST, CONTEXT_NORMAL_PROCESS, malformed):
                client.sendResponse(False, RESPONSE_MSG_BAD_REQ, reason=_describe(errors))
            return
        if self._fire(EVENT_REQUEST, CONTEXT_NORMAL_PROCESS, data):
            return
        routine = self.engine.request_handler(request["verb"])
        if routine is None:
            if not self._fire(EVENT_UNHANDLED_VERB, CONTEXT_NORMAL_PROCESS, data):
                client.sendResponse(False, RESPONSE_MSG_BAD_REQ, reason="Unhandled verb")
            return
        routine(client_instance=client)

    def _fire(self, event: str, context: int, data: dict) -> bool:
        """Fire ``event``; True when the handler closed the client (the handle ends)."""
        self.engine.fire(event, context, data)
        return self.client is not None and self.client.isClosed()

    def _end(self) -> None:
        client = self.client
        if client is not None and not client.isClosed():
            client.closeConnection()
        self.lifecycle.fire("close")
        self._fire_closed(CONTEXT_HANDLE_END)

    def _fire_closed(self, context: int) -> None:
        """``on_client_closed``, then ``destroy``: a raising handler is counted and logged,
        and cannot keep the session from ending."""
        try:
            if self.client is not None:
                self.engine.fire(EVENT_CLIENT_CLOSED, context, {"client_instance": self.client})
        except Exception:
            self.engine.count_runtime_error()
            log.exception("on_client_closed handler raised")
        finally:
            if self.lifecycle.can("destroy"):
                self.lifecycle.fire("destroy")

    def _fail(self, exc: BaseException, data: dict) -> None:
        """A runtime error: counted, reported, answered where the channel still allows."""
        engine = self.engine
        client = self.client
        engine.count_runtime_error()
        if self.lifecycle.can("fail"):
            self.lifecycle.fire("fail", context=CONTEXT_ERROR, details={"error": _one_line(exc)})
        log.info("session %s failed: %s", self.id[:8], _one_line(exc))
        try:
            engine.fire(
                EVENT_RUNTIME_ERROR,
                CONTEXT_ERROR,
                {"exception_object": exc, "traceback": _format_traceback(exc), **data},
            )
        except Exception:
            log.exception("on_runtime_error handler raised")
        if client is not None and not client.isClosed():
            # Only a session whose key exchange is done and whose response is not yet sent
            # can still be told; after a framing error the peer is not listening any more.
            if client.handshake_done and not client.response_sent and _channel_ok(exc):
                try:
                    client.sendResponse(False, RESPONSE_MSG_INTERNAL_ERROR)
                except Exception:
                    pass
            client.closeConnection()
        self._fire_closed(CONTEXT_ERROR)


class SessionActor(pykka.ThreadingActor):
    """Runs one :class:`Session` on its own thread, then stops itself."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.session = Session(engine)

    def serve_socket(self, sock: socket.socket, address: tuple) -> None:
        try:
            self.session.serve_socket(sock, address)
        finally:
            self.actor_ref.stop(block=False)

    def serve_client(self, client: ClientInstance) -> None:
        try:
            self.session.serve_client(client)
        finally:
            self.actor_ref.stop(block=False)


def _channel_ok(exc: BaseException) -> bool:
    from anweddol_actors.protocol import RemoteProtocolError

    return not isinstance(exc, RemoteProtocolError | OSError)


def _describe(errors: dict | None) -> str:
    if not errors:
        return "Malformed request"
    return "; ".join(f"{key}: {value}" for key, value in errors.items())


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _format_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


__all__ = ["Session", "SessionActor", "CLIENT_CLOSED_BY_HANDLER"]
