"""The web front end's server: uvicorn on a thread of its own, started and stopped by
handle.

The listening socket is bound here, before the thread starts, so that a port in use or a
bad address is the caller's error at once, and port 0 works in tests. The TLS files are
loaded here too (uvicorn's ``Config.load``), so that a missing or bad PEM file is one
line at start rather than a dead thread. uvicorn installs no signal handler off the main
thread: ``serve`` keeps its own.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from typing import Any

import uvicorn

from anweddol_actors.errors import AnweddolError
from anweddol_actors.web.settings import WebSettings

log = logging.getLogger(__name__)

__all__ = ["WebError", "WebServer"]

# How long start() waits for uvicorn to be serving, and stop() for it to end.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class WebError(AnweddolError, RuntimeError):
    """The web front end cannot start (its address, its TLS files)."""


class WebServer:
    """One ASGI application served on ``settings``' address until :meth:`stop`."""

    def __init__(self, app: Any, settings: WebSettings, **uvicorn_options: Any) -> None:
        """``uvicorn_options``: more ``uvicorn.Config`` arguments (bounds, protocol)."""
        self.settings = settings
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
            **uvicorn_options,
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


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
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
