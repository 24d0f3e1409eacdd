"""The web front end's server: uvicorn on a thread of its own, started and stopped by
handle.

The listening socket is bound here, before the thread starts, so that a port in use or a
bad address is the caller's error at once, and port 0 works in tests. The TLS files are
loaded here too (uvicorn's ``Config.load``), so that a missing or bad PEM file is one
line at start, naming the file, rather than a dead thread. uvicorn installs no signal
handler off the main thread: ``serve`` keeps its own.

Bounds against hostile peers. uvicorn bounds the size of the request line and headers
(``h11_max_incomplete_event_size``) and idle kept-alive connections
(``timeout_keep_alive``); the connections and requests in flight are bounded here (as
uvicorn's ``limit_concurrency`` would, but answered in the normalized shape). Nothing
bounds the time a peer takes to send its request: a client trickling its headers or its
body one byte at a time holds its connection for ever (slowloris). Its h11 protocol is
therefore subclassed (:class:`BoundedH11Protocol`): a request must be complete, headers
and body, within ``request_deadline`` of the connection (or of the previous response on
a kept-alive connection), or the connection is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import threading
import time
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from anweddol_actors.config.host import tls_problem
from anweddol_actors.errors import AnweddolError
from anweddol_actors.protocol.messages import (
    RESPONSE_MSG_BAD_REQ,
    RESPONSE_MSG_UNAVAILABLE,
    make_response,
)
from anweddol_actors.web.settings import WebSettings

log = logging.getLogger(__name__)

__all__ = ["BoundedH11Protocol", "WebError", "WebServer", "bounded_protocol", "check_tls_files"]

# How long start() waits for uvicorn to be serving, and stop() for it to end.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
# Seconds uvicorn's graceful stop waits for requests in flight (under STOP_TIMEOUT).
STOP_GRACE = 3.0


class WebError(AnweddolError, RuntimeError):
    """The web front end cannot start (its address, its TLS files)."""


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline on each request: from the connection (or
    the previous response) to the end of the request's body. Cut past it. A subclass per
    server sets :attr:`request_deadline` (:func:`bounded_protocol`)."""

    request_deadline: float | None = None
    # uvicorn's limit_concurrency, kept here so that its refusal has the normalized shape:
    # past this many connections (idle ones included) or requests in flight, 503.
    max_connections: int | None = None
    cut = 0  # connections cut at their deadline, by this server (its subclass)
    refused = 0  # requests refused past max_connections

    _deadline_handle: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inner_app = self.app
        self.app = self._bounded_app

    async def _bounded_app(self, scope: Any, receive: Any, send: Any) -> None:
        limit = self.max_connections
        # This request's own task is counted already: past the limit means more than it.
        if limit is not None and (len(self.connections) > limit or len(self.tasks) > limit):
            type(self).refused += 1
            await _send_normalized(
                send,
                503,
                make_response(False, RESPONSE_MSG_UNAVAILABLE, {}, "Too many connections"),
            )
            return
        await self._inner_app(scope, receive, send)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            self._disarm_deadline()  # the request is in: the engine's bounds apply now

    def on_response_complete(self) -> None:
        # Armed first: the parent may go on with a pipelined request already complete,
        # whose handle_events then disarms it.
        self._arm_deadline()
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        """An unparsable request (bad request line or headers, headers over
        ``h11_max_incomplete_event_size``): 400 in the normalized shape, then close."""
        body = json.dumps(
            make_response(False, RESPONSE_MSG_BAD_REQ, {}, "Invalid HTTP request"),
            separators=(",", ":"),
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def _arm_deadline(self) -> None:
        self._disarm_deadline()
        if self.request_deadline is not None:
            self._deadline_handle = self.loop.call_later(
                self.request_deadline, self._deadline_passed
            )

    def _disarm_deadline(self) -> None:
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
            self._deadline_handle = None

    def _deadline_passed(self) -> None:
        self._deadline_handle = None
        if self.transport is None or self.transport.is_closing():
            return
        type(self).cut += 1
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.info(
            "cut %s: request not complete within the request deadline (%g s)",
            client,
            self.request_deadline,
        )
        # connection_lost follows: the application's wait for the body ends with a
        # disconnect, and what it holds is given back there.
        self.transport.close()


async def _send_normalized(send: Any, status: int, response: dict) -> None:
    body = json.dumps(response, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def bounded_protocol(
    request_deadline: float | None, max_connections: int | None = None
) -> type[BoundedH11Protocol]:
    """A protocol class of its own for one server: its bounds and its counts."""
    return type(
        "BoundedH11Protocol",
        (BoundedH11Protocol,),
        {
            "request_deadline": request_deadline,
            "max_connections": max_connections,
            "cut": 0,
            "refused": 0,
        },
    )


class WebServer:
    """One ASGI application served on ``settings``' address until :meth:`stop`."""

    def __init__(self, app: Any, settings: WebSettings, **uvicorn_options: Any) -> None:
        """``uvicorn_options``: more ``uvicorn.Config`` arguments, over the bounds taken
        from ``settings``."""
        self.settings = settings
        self.protocol = bounded_protocol(settings.request_deadline, settings.limit_concurrency)
        options: dict[str, Any] = {
            "http": self.protocol,
            # Enforced by the protocol (normalized 503), not by uvicorn (plain text).
            "limit_concurrency": None,
            "timeout_keep_alive": settings.timeout_keep_alive,
            "h11_max_incomplete_event_size": settings.max_header_size,
            # At stop, requests still waiting (a CREATE) are cancelled after this: their
            # sessions then find the client gone and unwind.
            "timeout_graceful_shutdown": STOP_GRACE,
            # The peer's address is the socket's: uvicorn would otherwise take it from
            # X-Forwarded-For when the peer is loopback (or FORWARDED_ALLOW_IPS says so),
            # letting a local client pick the address the IP filter and the limits judge.
            "proxy_headers": False,
            **uvicorn_options,
        }
        self._config = uvicorn.Config(
            app,
            host=settings.bind_address,
            port=settings.port,
            ssl_keyfile=settings.ssl_key_path,
            ssl_certfile=settings.ssl_certificate_path,
            # The process's logging is serve's (anweddol_actors.logs): uvicorn's loggers
            # propagate to it, and its access log would repeat the request lines.
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            **options,
        )
        self._server = uvicorn.Server(self._config)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple:
        """``(host, port)`` listened on (the port the kernel chose for port 0)."""
        if self._socket is None:
            return (self.settings.bind_address, self.settings.port)
        return self._socket.getsockname()[:2]

    @property
    def url(self) -> str:
        host, port = self.address
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        if ":" in host:
            host = f"[{host}]"
        return f"{self.settings.scheme}://{host}:{port}"

    def start(self) -> None:
        """Listen and serve; returns once uvicorn serves. Raises WebError (one line)."""
        if self.settings.tls:
            check_tls_files(self.settings.ssl_certificate_path, self.settings.ssl_key_path)
        try:
            self._config.load()
        except (OSError, ssl.SSLError) as exc:
            raise WebError(f"web_server: TLS files not usable: {_describe(exc)}") from None
        self._socket = _listen(self.settings.bind_address, self.settings.port)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="anweddol-web",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise WebError("web_server: the HTTP server did not start (see the log)")
            time.sleep(0.01)
        log.info("web server on %s", self.url)

    def stop(self) -> None:
        """Stop serving: connections get uvicorn's graceful shutdown, bounded."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._server.should_exit = True
            thread.join(STOP_TIMEOUT)
            if thread.is_alive():
                self._server.force_exit = True
                thread.join(STOP_TIMEOUT)
            if thread.is_alive():
                log.error("web server thread did not end")
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def check_tls_files(certificate: str | None, key: str | None) -> None:
    """Raise WebError naming the PEM file that cannot serve HTTPS (``config check`` asks
    the same question: ``config.host.tls_problem``)."""
    problem = tls_problem(certificate, key)
    if problem is not None:
        raise WebError(problem)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
    # (the accepted ones inherit it). Without it uvicorn's two writes of a response
    # (headers, then body) wait out the client's delayed ACK: 40 ms per request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise WebError(f"web_server: cannot listen on {host}:{port}: {_describe(exc)}") from None
    return sock


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return str(exc) or type(exc).__name__
