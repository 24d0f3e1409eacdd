"""A real ServerInterface running on its own thread, for the tests that talk to one; and
the loopback stand-ins those tests put beside it."""

from __future__ import annotations

import socket
import threading
import time

from anweddol_actors.core.server import ServerInterface


class RunningServer:
    def __init__(self, server: ServerInterface) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.startServer, daemon=True)

    @property
    def address(self) -> tuple:
        return ("127.0.0.1", self.server.listen_address[1])

    @property
    def engine(self):
        return self.server.engine

    def start(self) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.isRunning():
            assert time.monotonic() < deadline, "server did not start"
            assert self.thread.is_alive(), "startServer returned early"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.stopServer()
        self.thread.join(timeout=300)
        assert not self.thread.is_alive()
        self.server.close()


def record_events(server: ServerInterface) -> list[tuple[str, int, dict]]:
    """Install a recording handler on all 19 events; returns the (live) record."""
    from anweddol_actors.lifecycle.events import ALL_EVENTS

    seen: list[tuple[str, int, dict]] = []
    lock = threading.Lock()
    for event in ALL_EVENTS:

        def handler(context, data, _event=event):
            with lock:
                seen.append((_event, context, data))

        getattr(server, event)(handler)  # the decorator form: @server.on_x
    return seen


def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.02)


class Echo:
    """A loopback echo server standing in for the guest's SSH port; each connection on
    its own thread, as a relay may hold several at once."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass  # the relay resets its connections when it stops

    def close(self) -> None:
        self.server.close()
