"""Client sessions: one per connection, from the accepted socket to the closed one.

The flow mirrors the seed server's handling of a client (accept event → key exchange →
one request → its handler → close), but every step is a journalled transition of the
session's machine, and each seed event fires after the transition that backs it. The
whole flow runs on the session's own thread: the listener only accepts, so a client that
connects and says nothing delays nobody (PROTOCOL.md §4), and holds its own thread for
at most the request deadline (``Settings.request_deadline``) before its request is in.

Until its first valid request, a session's lifecycle is *deferred*: its rows (start,
handshake, and malformed/fail, close, destroy for a connection that never asks anything
valid) are written in one transaction, with the request's row or at the end, rather than
one fsync each. Anyone can open a connection; only a valid request earns durable rows one
by one (docs/architecture.md, "The journal").
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pykka

from anweddol_actors.actors.base import one_line
from anweddol_actors.engine.context import EngineContext, Request
from anweddol_actors.lifecycle import Lifecycle, Transition
from anweddol_actors.lifecycle.events import (
    CONTEXT_ERROR,
    CONTEXT_HANDLE_END,
    CONTEXT_NORMAL_PROCESS,
    EVENT_CLIENT_CLOSED,
    EVENT_CLIENT_INITIALIZED,
    EVENT_CONNECTION_ACCEPTED,
    EVENT_MALFORMED_REQUEST,
    EVENT_REQUEST,
    EVENT_UNHANDLED_VERB,
)
from anweddol_actors.protocol import RemoteProtocolError
from anweddol_actors.protocol.messages import RESPONSE_MSG_BAD_REQ, RESPONSE_MSG_INTERNAL_ERROR
from anweddol_actors.transport.channel import ClientChannel
from anweddol_actors.transport.http_channel import HttpChannel

log = logging.getLogger(__name__)
# One line per request (docs/operations.md): its own logger, so that an administrator can
# route or silence it apart from the engine's messages.
request_log = logging.getLogger("anweddol_actors.requests")

# Client-chosen strings put in the request line are cut: a verb or a container_uuid may
# be as long as a whole message.
_FIELD_LIMIT = 64


class Session:
    """The flow of one client connection. Runs on one thread from start to end."""

    def __init__(
        self, context: EngineContext, on_end: Callable[[Session], None] | None = None
    ) -> None:
        self.context = context
        self.id = uuid.uuid4().hex
        # Not synced: a session owns nothing a restart recovers, so its rows need only
        # survive the server process, not a power loss (journal/store.py's docstring).
        self.lifecycle = Lifecycle("session", self.id, context.journal, deferred=True, synced=False)
        self.channel: ClientChannel | HttpChannel | None = None
        self._on_end = on_end
        # The address whose slot in the connection limits this session holds (set by the
        # supervisor for the connections its listener admitted), given back at the end.
        self.admitted_address: str | None = None
        # For the request line: when the connection was accepted, what the client asked
        # (None until a request came in, {} for a malformed one), how the session ended.
        self._started = time.monotonic()
        self._peer = ""
        self._request: dict | None = None
        self._outcome: str | None = None
        # "tcp", or "http" for a request of the web front end (HttpChannel).
        self._transport = "tcp"

    # -- entry points --------------------------------------------------------------

    def serve_socket(
        self, sock: socket.socket, address: tuple, accepted_at: float | None = None
    ) -> None:
        """Handle a freshly accepted socket: accept event, key exchange, then the request.

        ``accepted_at`` (``time.monotonic()``) starts the request deadline; now when None.
        """
        context = self.context
        if accepted_at is not None:
            self._started = accepted_at
        self._peer = address[0] if address else ""
        try:
            try:
                transition = self.lifecycle.fire(
                    "start", data={"peer": address[0] if address else ""}
                )
                context.dispatch.emit(
                    transition, EVENT_CONNECTION_ACCEPTED, CONTEXT_NORMAL_PROCESS, {"socket": sock}
                )
                if sock.fileno() == -1:
                    # The seed's way to refuse a client: the handler closed the raw socket.
                    self._outcome = "refused"
                    self.lifecycle.fire("close", details={"reason": "refused on connection"})
                    self.lifecycle.fire("destroy")
                    return
                self.channel = ClientChannel(
                    sock,
                    context.private_key,
                    context.settings.client_timeout,
                    max_message_size=context.settings.max_message_size,
                    request_deadline=context.settings.request_deadline,
                    accepted_at=accepted_at,
                )
                self.channel.exchange_keys()
            except Exception as exc:
                self._fail(exc, {"socket": sock})
                _close_quietly(sock)
                return
            self._handle_initialized()
        finally:
            self._ended()

    def serve_channel(self, channel: ClientChannel | HttpChannel) -> None:
        """Handle a client whose keys the caller may have exchanged (seed ``handleClient``),
        or an HTTP request (its channel has no key exchange and holds its request)."""
        self.channel = channel
        self._peer = channel.ip
        self._transport = getattr(channel, "transport", "tcp")
        deadline = self.context.settings.request_deadline
        if deadline is not None and channel.request_deadline is None:
            channel.set_request_deadline(deadline)
        try:
            try:
                start_data = {"peer": channel.ip}
                if self._transport != "tcp":
                    # Operators tell an HTTP request's session from a TCP client's by it.
                    start_data["transport"] = self._transport
                self.lifecycle.fire("start", data=start_data)
                if not channel.handshake_done and not channel.closed:
                    channel.exchange_keys()
            except Exception as exc:
                self._fail(exc, {"client": channel})
                return
            self._handle_initialized()
        finally:
            self._ended()

    def abort(self) -> None:
        """Cut the connection from outside (the server is stopping): the session's own
        thread then fails its wait and ends through its machine."""
        channel = self.channel
        if channel is None:
            return
        if channel.socket is None:
            # An HTTP request's channel: no socket of its own; closing it ends the wait
            # of the request and makes the next send fail.
            channel.close_quietly()
            return
        try:
            channel.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- the flow ----------------------------------------------------------------------

    def _handle_initialized(self) -> None:
        channel = self.channel
        assert channel is not None
        try:
            self._handle_request(channel)
        except Exception as exc:
            self._fail(exc, {"client": channel})
            return
        self._end()

    def _emit(self, transition: Transition, event: str, data: dict) -> bool:
        """Fire ``event``; True when the handler closed the client (the handle ends)."""
        self.context.dispatch.emit(transition, event, CONTEXT_NORMAL_PROCESS, data)
        return self.channel is not None and self.channel.closed

    def _handle_request(self, channel: ClientChannel | HttpChannel) -> None:
        """From the finished key exchange to the response; returns early when a handler
        closed the client (the seed's way to end the handling)."""
        data = {"client": channel}
        if self._emit(self.lifecycle.fire("handshake"), EVENT_CLIENT_INITIALIZED, data):
            return
        valid, request, errors = channel.receive_request()
        self._request = request if valid and request is not None else {}
        if not valid:
            transition = self.lifecycle.fire("malformed", details={"errors": _describe(errors)})
            if not self._emit(transition, EVENT_MALFORMED_REQUEST, {**data, "errors": errors}):
                channel.send_response(False, RESPONSE_MSG_BAD_REQ, reason=_describe(errors))
            return
        verb = request["verb"]
        # A valid request: from its row on (written with the rows held so far, in one
        # transaction), every step of this session is durable before it is acted on.
        self.lifecycle.make_durable()
        if self._emit(self.lifecycle.fire("request", details={"verb": verb}), EVENT_REQUEST, data):
            return
        routine = self.context.verbs.get(verb)
        if routine is None:
            transition = self.lifecycle.fire("unhandled", details={"verb": verb})
            if not self._emit(transition, EVENT_UNHANDLED_VERB, data):
                channel.send_response(False, RESPONSE_MSG_BAD_REQ, reason="Unhandled verb")
            return
        routine(Request(self.context, self.lifecycle, channel))

    def _end(self) -> None:
        channel = self.channel
        if channel is not None:
            channel.close_quietly()
        transition = self.lifecycle.fire("close")
        self._closed(transition, CONTEXT_HANDLE_END)

    def _closed(self, transition: Transition, call_context: int) -> None:
        """``on_client_closed`` after ``transition``, then ``destroy``. A raising handler
        fails the session (journalled) and is reported once; the session ends anyway."""
        try:
            if self.channel is not None:
                self.context.dispatch.emit(
                    transition, EVENT_CLIENT_CLOSED, call_context, {"client": self.channel}
                )
        except Exception as exc:
            failed = None
            if self.lifecycle.can("fail"):
                failed = self.lifecycle.fire(
                    "fail", context=CONTEXT_ERROR, details={"error": one_line(exc)}
                )
            log.warning("on_client_closed handler raised: %s", one_line(exc))
            self.context.dispatch.report(exc, {"client": self.channel}, failed)
        finally:
            if self.lifecycle.can("destroy"):
                self.lifecycle.fire("destroy")

    def _fail(self, exc: BaseException, data: dict) -> None:
        """A runtime error: journalled, reported once, answered where the channel allows."""
        channel = self.channel
        transition = None
        if self.lifecycle.can("fail"):
            transition = self.lifecycle.fire(
                "fail", context=CONTEXT_ERROR, details={"error": one_line(exc)}
            )
        self._outcome = "failed"
        log.info("session %s failed: %s", self.id[:8], one_line(exc))
        self.context.dispatch.report(exc, data, transition)
        if channel is not None and not channel.closed:
            # Only a session whose key exchange is done and whose response is not yet sent
            # can still be told; after a framing error the peer is not listening any more.
            if channel.handshake_done and not channel.response_sent and _channel_ok(exc):
                try:
                    channel.send_response(False, RESPONSE_MSG_INTERNAL_ERROR)
                except Exception:
                    pass
            channel.close_quietly()
        if transition is not None:
            self._closed(transition, CONTEXT_ERROR)
        elif self.lifecycle.can("destroy"):
            self.lifecycle.fire("destroy")

    def _ended(self) -> None:
        try:
            self._log_request()
        except Exception:
            # The log line is a report, not the session's work: it must not end the thread.
            log.exception("session %s: request line not logged", self.id[:8])
        finally:
            if self._on_end is not None:
                self._on_end(self)

    def _log_request(self) -> None:
        """The request line: INFO for a session that received a request (valid or not)
        or was refused, DEBUG for one that ended before (a scan, a silent client). Only
        the named fields: never a token, password or key from the request or response."""
        request = self._request
        channel = self.channel
        response = channel.response if channel is not None else None
        if response is not None:
            outcome = response[1]
        else:
            outcome = self._outcome if self._outcome is not None else "closed"
        seconds = time.monotonic() - self._started
        # Counted whatever the log level (the metrics bound the verb and outcome labels).
        self.context.metrics.request((request or {}).get("verb"), outcome, seconds, self._transport)
        level = logging.INFO if request is not None or self._outcome == "refused" else logging.DEBUG
        if not request_log.isEnabledFor(level):
            return
        verb = _field((request or {}).get("verb"))
        duration_ms = round(seconds * 1000, 1)
        fields = {
            "connection": self.id,
            "client": channel.ip if channel is not None else self._peer,
            "verb": verb,
            "container": _container(request, response),
            "outcome": outcome,
            "duration_ms": duration_ms,
        }
        if self._transport != "tcp":
            # Named for HTTP requests only: a TCP client's line stays as it was.
            fields["transport"] = self._transport
        request_log.log(level, "%s %s in %.1f ms", verb or "-", outcome, duration_ms, extra=fields)


class SessionActor(pykka.ThreadingActor):
    """Runs one :class:`Session` on its own thread, then stops itself.

    Handed its work with :meth:`serve`, a plain message: a proxy would introspect the
    actor's attributes for every connection (pykka builds one per ``proxy()`` call, about
    0.2 ms of CPU, a tenth of what a STAT costs beyond its RSA decryption).
    """

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

    @staticmethod
    def serve(actor: pykka.ActorRef, entry: Callable[..., None], *args: object) -> None:
        """Have the started ``actor`` run ``entry`` (``session.serve_socket`` or
        ``serve_channel``) on its thread, then stop."""
        actor.tell(_Serve(entry, args))

    def on_receive(self, message: object) -> None:
        if not isinstance(message, _Serve):
            return
        try:
            message.entry(*message.args)
        finally:
            self.actor_ref.stop(block=False)


@dataclass(frozen=True)
class _Serve:
    """The one message a :class:`SessionActor` gets: what to run on its thread."""

    entry: Callable[..., None]
    args: tuple


def _field(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return value if len(value) <= _FIELD_LIMIT else value[: _FIELD_LIMIT - 3] + "..."


def _container(request: dict | None, response: tuple[bool, str, dict] | None) -> str | None:
    """The container a request is about: CREATE's answer, else the request's parameter
    (DESTROY's)."""
    if response is not None and isinstance(response[2], dict):
        answered = _field(response[2].get("container_uuid"))
        if answered is not None:
            return answered
    parameters = (request or {}).get("parameters")
    if isinstance(parameters, dict):
        return _field(parameters.get("container_uuid"))
    return None


def _channel_ok(exc: BaseException) -> bool:
    return not isinstance(exc, RemoteProtocolError | OSError)


# Errors name what they refuse (a parameter's name, up to max_message_size long): the
# description, journalled and sent back, is cut so that a refusal stays small.
_DESCRIPTION_LIMIT = 200


def _describe(errors: dict | None) -> str:
    if not errors:
        return "Malformed request"
    text = "; ".join(f"{key}: {value}" for key, value in errors.items())
    return text if len(text) <= _DESCRIPTION_LIMIT else text[: _DESCRIPTION_LIMIT - 3] + "..."


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


__all__ = ["Session", "SessionActor"]
