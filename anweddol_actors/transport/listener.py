"""The listener: a thread that accepts connections and hands each to a new session.

It does nothing slow: no key exchange, no handler. A refused address (IP filter) is closed
before anything is read from it.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Listener:
    def __init__(
        self,
        bind_address: str,
        port: int,
        on_accept: Callable[[socket.socket, tuple], None],
        allows: Callable[[str], bool] | None = None,
        backlog: int = 128,
    ) -> None:
        self._on_accept = on_accept
        self._allows = allows
        family = socket.AF_INET6 if ":" in bind_address else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((bind_address, port))
            self._socket.listen(backlog)
        except OSError:
            self._socket.close()
            raise
        self._socket.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="anweddol-listener", daemon=True)
        self._stopping = threading.Event()

    @property
    def address(self) -> tuple:
        return self._socket.getsockname()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        for sock in (self._socket, self._wake_r, self._wake_w):
            sock.close()

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    self._accept_ready()

    def _accept_ready(self) -> None:
        while True:
            try:
                sock, address = self._socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                return
            sock.setblocking(True)
            if self._allows is not None and not self._allows(address[0]):
                log.info("refused %s (IP filter)", address[0])
                sock.close()
                continue
            try:
                self._on_accept(sock, address)
            except Exception:
                log.exception("could not start a session for %s", address[0])
                sock.close()
