"""The listener: a thread that accepts connections and hands each to a new session.

It does nothing slow: no key exchange, no handler, no journal row. A refused address (IP
filter) or a connection past a cap (:class:`~anweddol_actors.transport.limits.ConnectionLimits`)
is closed before anything is read from it.

When ``accept`` fails for want of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM), retrying at
once only spins: the pending connection stays queued and the next ``select`` reports it
again. The listener then stops polling its socket for a while (0.1 s, doubling up to
:data:`MAX_BACKOFF`), logs at a bounded rate, and keeps the live connections, which run
on their own threads, untouched. The connections queued meanwhile wait in the kernel's
backlog and are accepted once descriptors are free again.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable

from anweddol_actors.logs.ratelimited import RateLimitedLog
from anweddol_actors.transport.limits import ConnectionLimits

log = logging.getLogger(__name__)

# Errors of accept() that mean "out of resources now", not "this connection is bad".
RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
MIN_BACKOFF = 0.1
MAX_BACKOFF = 1.6
LOG_INTERVAL = 5.0


class Listener:
    def __init__(
        self,
        bind_address: str,
        port: int,
        on_accept: Callable[[socket.socket, tuple], None],
        allows: Callable[[str], bool] | None = None,
        backlog: int = 128,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self._on_accept = on_accept
        self._allows = allows
        self.limits = limits
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
        self._backoff = 0.0
        self._resource_log = RateLimitedLog(log, LOG_INTERVAL)
        self.accept_failures = 0  # accept() calls that failed for want of resources

    @property
    def address(self) -> tuple:
        return self._socket.getsockname()

    @property
    def resource_log_lines(self) -> int:
        return self._resource_log.lines

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
            paused_until: float | None = None
            while not self._stopping.is_set():
                timeout = (
                    None if paused_until is None else max(0.0, paused_until - time.monotonic())
                )
                ready = {key.fileobj for key, _ in selector.select(timeout)}
                if self._wake_r in ready:
                    return
                if paused_until is not None:
                    if time.monotonic() < paused_until:
                        continue
                    paused_until = None
                    selector.register(self._socket, selectors.EVENT_READ)
                    # Poll at once: what queued during the pause may not wake select again.
                    ready.add(self._socket)
                if self._socket in ready and not self._accept_ready():
                    selector.unregister(self._socket)
                    paused_until = time.monotonic() + self._backoff

    def _accept_ready(self) -> bool:
        """Accept what is queued; False when accepting must pause (out of resources)."""
        while True:
            try:
                sock, address = self._socket.accept()
            except (BlockingIOError, InterruptedError):
                return True
            except OSError as exc:
                if exc.errno in RESOURCE_ERRORS:
                    self.accept_failures += 1
                    self._backoff = min(max(self._backoff * 2, MIN_BACKOFF), MAX_BACKOFF)
                    self._resource_log.warning(
                        "accept failed: %s; pausing accepts for %.1f s (live connections"
                        " keep running); failures since the last such line: %d",
                        exc.strerror or exc,
                        self._backoff,
                    )
                    return False
                # ECONNABORTED and the like: that one connection is gone; select reports
                # the next one.
                log.info("accept failed: %s", exc)
                return True
            self._backoff = 0.0
            self._admit(sock, address)

    def _admit(self, sock: socket.socket, address: tuple) -> None:
        sock.setblocking(True)
        ip = address[0]
        if self._allows is not None and not self._allows(ip):
            log.info("refused %s (IP filter)", ip)
            sock.close()
            return
        if self.limits is not None and not self.limits.admit(ip):
            sock.close()  # counted and logged (at a bounded rate) by the limits
            return
        try:
            self._on_accept(sock, address)
        except Exception:
            log.exception("could not start a session for %s", ip)
            sock.close()
            if self.limits is not None:
                self.limits.release(ip)
