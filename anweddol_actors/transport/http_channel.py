"""One HTTP request as a client of the engine: what a session needs from a channel.

The web front end (``anweddol_actors.web.api``) reads and parses the request's body; the
engine's session then runs it exactly as it runs a TCP client's request, through the same
calls it makes on a :class:`~anweddol_actors.transport.channel.ClientChannel`:
``receive_request`` (judged by :func:`~anweddol_actors.transport.channel.take_request`,
as a TCP client's request is), ``send_response``, ``close``. There is no key
exchange (``handshake_done`` is True from the start) and no socket (``socket`` is None:
the connection belongs to the HTTP server).

Two threads meet here. The session runs on its own thread; the HTTP request waits on the
web server's event loop. :meth:`send_response` hands the response to that loop
(``call_soon_threadsafe``) and then waits, bounded, for the web side's verdict: written to
a client still connected (the response counts as delivered), or not (the client hung up,
or the web side stopped waiting): it then raises :class:`ChannelClosed`, so that a CREATE
whose client is gone unwinds as it does over TCP. A channel closed without a response (a
handler refused the client, the server cut the session) tells the waiting request so at
once: :meth:`answer` then yields None.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from anweddol_actors.protocol.messages import make_response
from anweddol_actors.transport.channel import ChannelClosed, client_id_for, take_request

__all__ = ["DEFAULT_DELIVERY_TIMEOUT", "HttpChannel"]

# How long send_response waits for the web side to write the response: the event loop
# only has to serialise a small JSON document onto the connection.
DEFAULT_DELIVERY_TIMEOUT = 10.0


class HttpChannel:
    """The engine's view of one HTTP request (``transport`` = ``"http"``)."""

    transport = "http"

    def __init__(
        self,
        ip: str,
        request: Any,
        loop: asyncio.AbstractEventLoop,
        *,
        error: str | None = None,
        delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT,
    ) -> None:
        """``request``: the request the web layer built (``{"verb", "parameters"}``, not
        validated yet); ``error``: why the body could not be read as one (its request is
        then malformed). Made on ``loop``'s thread: the answer is a future of that loop."""
        self.ip = ip
        self.id = client_id_for(ip)
        self.created_at = int(time.time())
        self.socket = None  # the HTTP server owns the connection
        self.private_key = None  # nothing is encrypted at this layer (TLS is the server's)
        self.timeout: float | None = None
        self.stored_request: dict | None = None
        self.handshake_done = True  # no key exchange over HTTP
        self.response_sent = False
        self.response: tuple[bool, str, dict] | None = None
        self._request = request
        self._error = error
        self._received = False
        self._closed = False
        self._handed = False  # a response, or the close, was handed to the loop
        self._gone = False  # the web side will write nothing more for this request
        self._lock = threading.Lock()
        self._loop = loop
        self._answer: asyncio.Future = loop.create_future()
        self._verdict = threading.Event()
        self._delivered = False
        self._delivery_timeout = delivery_timeout

    # -- what the session calls (its own thread) ---------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def request_deadline(self) -> float | None:
        """None: the request is complete before the session starts (the web server bounds
        the time to read it)."""
        return None

    def set_request_deadline(self, seconds: float, since: float | None = None) -> None:
        """Nothing to bound: the request was read by the web server."""

    def exchange_keys(self) -> None:
        raise ChannelClosed("no key exchange over HTTP")

    def receive_request(self, store: bool = True) -> tuple[bool, dict | None, dict | None]:
        """The request the web layer read: ``(is_valid, sanitized | None, errors | None)``."""
        self._require_open()
        if self._received:
            raise ChannelClosed("an HTTP request carries one request")
        self._received = True
        return take_request(self, self._request, self._error, store)

    def send_response(
        self, success: bool, message: str, data: dict | None = None, reason: str | None = None
    ) -> None:
        """Hand the one response to the waiting HTTP request; returns once it is written
        to a client still connected. Raises ChannelClosed when it was not (the channel is
        then closed: nobody is listening any more)."""
        with self._lock:
            self._require_open()
            if self.response_sent or self._handed:
                raise ChannelClosed("A response was already sent to this client")
            if self._gone:
                self._closed = True
                raise ChannelClosed("the HTTP client is gone")
            self._handed = True
        response = make_response(success, message, data or {}, reason)
        if not self._post(response):
            self._closed = True
            raise ChannelClosed("the HTTP server is stopped")
        if not self._verdict.wait(self._delivery_timeout) or not self._delivered:
            self._closed = True
            raise ChannelClosed("the HTTP client is gone: the response was not delivered")
        self.response_sent = True
        self.response = (success, message, data or {})

    def close(self) -> None:
        """End the channel; raises ChannelClosed when it already was (the seed's rule). A
        request still waiting for its answer learns there is none."""
        with self._lock:
            if self._closed:
                raise ChannelClosed("Client is already closed")
            self._closed = True
            handed, self._handed = self._handed, True
        if not handed:
            self._post(None)
        # A send_response waiting for its verdict (the server cuts the session) ends now.
        self._verdict.set()

    def close_quietly(self) -> None:
        try:
            self.close()
        except ChannelClosed:
            pass

    # -- what the web side calls (the event loop's thread) -------------------------------

    @property
    def answer(self) -> asyncio.Future:
        """Resolves to the normalized response dict, or None when the channel was closed
        without one."""
        return self._answer

    def written(self, delivered: bool) -> None:
        """The web side's verdict on the response it was handed: written to a connected
        client (True) or not (False)."""
        self._delivered = delivered
        self._verdict.set()

    def abandon(self) -> None:
        """The web side writes nothing more for this request (the client hung up, or the
        wait for the answer ran out): a response sent from now on is not delivered."""
        with self._lock:
            self._gone = True
        self.written(False)

    # -- inside --------------------------------------------------------------------------

    def _post(self, value: dict | None) -> bool:
        """Resolve the answer on the loop's thread; False when the loop is closed."""

        def resolve() -> None:
            if not self._answer.done():
                self._answer.set_result(value)

        try:
            self._loop.call_soon_threadsafe(resolve)
        except RuntimeError:
            return False
        return True

    def _require_open(self) -> None:
        if self._closed:
            raise ChannelClosed("Client is closed")
