"""A tiny threaded server built from ServerConnection, for the client tests (127.0.0.1)."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

# The document-side encoder (Wire) lives with the protocol tests; there are no packages
# under tests/, so make its folder importable here too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))

from protocol_support import CREATE_DATA, TOKEN, UUID  # noqa: E402

from anweddol_actors.protocol import (  # noqa: E402
    NEED_DATA,
    MessageSent,
    RemoteProtocolError,
    RequestReceived,
    ServerConnection,
)
from anweddol_actors.protocol.messages import make_response, validate_request  # noqa: E402


def default_handler(request: Any) -> dict:
    ok, request, errors = validate_request(request)
    if not ok:
        return make_response(False, "Bad request", {"errors": errors}, reason="Malformed")
    verb, parameters = request["verb"], request["parameters"]
    if verb == "STAT":
        return make_response(True, "OK", {"version": "test", "uptime": 1, "available": 2})
    if verb == "CREATE":
        return make_response(True, "OK", CREATE_DATA)
    if verb == "DESTROY":
        if (parameters.get("container_uuid"), parameters.get("client_token")) == (UUID, TOKEN):
            return make_response(True, "OK")
        return make_response(False, "Bad authentication")
    return make_response(False, "Bad request", reason="Unhandled verb")


class TinyServer:
    """One thread per connection, each driving a ServerConnection over a real socket."""

    def __init__(self, key: rsa.RSAPrivateKey, handler: Callable[[Any], dict]) -> None:
        self.key, self.handler = key, handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.requests: list[Any] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="tiny-accept")
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._handle, args=(sock,), name="tiny-session")
            self._threads.append(thread)
            thread.start()

    def _handle(self, sock: socket.socket) -> None:
        conn = ServerConnection(self.key)
        with sock:
            sock.settimeout(5)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                while True:
                    event = conn.next_event()
                    if event is NEED_DATA:
                        out = conn.data_to_send()
                        if out:
                            sock.sendall(out)
                        conn.receive_data(sock.recv(65536))
                    elif isinstance(event, RequestReceived):
                        self.requests.append(event)
                        conn.send_response(self.handler(event.payload))
                    elif isinstance(event, MessageSent):
                        sock.sendall(conn.data_to_send())
                        return
            except RemoteProtocolError as exc:
                self.errors.append(str(exc))
                try:
                    sock.sendall(conn.data_to_send())
                except OSError:
                    pass
            except OSError as exc:
                self.errors.append(f"socket: {exc}")

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(5)
        for thread in self._threads:
            thread.join(5)
        self.listener.close()
        assert not any(t.is_alive() for t in [self._acceptor, *self._threads])
