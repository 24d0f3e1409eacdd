"""A real ServerInterface running on its own thread, for the tests that talk to one; and
the loopback stand-ins those tests put beside it."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from anweddol_actors.actors.registry import LiveContainer
from anweddol_actors.core.crypto import RSAWrapper
from anweddol_actors.core.server import ServerInterface
from anweddol_actors.engine.entities import start_container, start_forwarder
from anweddol_actors.engine.settings import Settings
from anweddol_actors.lifecycle.events import CONTEXT_NORMAL_PROCESS
from anweddol_actors.web.app import build_app
from anweddol_actors.web.server import WebServer
from anweddol_actors.web.settings import WebSettings

# A CREATE's events, in the seed's order (with a warm pool, all but the first fire at
# handover).
CREATE_EVENTS = [
    "on_container_created",
    "on_container_domain_started",
    "on_endpoint_shell_created",
    "on_endpoint_shell_opened",
    "on_endpoint_shell_closed",
    "on_forwarder_created",
    "on_forwarder_started",
]


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


def bare_server(rsa: RSAWrapper, client_timeout: float = 3.0, **overrides) -> RunningServer:
    """A server on libvirt's test driver with an in-memory journal and no ISO (for the
    tests that never create a container), not started yet; ``overrides`` are Settings."""
    settings = Settings(**{"database": ":memory:", "libvirt_uri": "test:///default", **overrides})
    server = ServerInterface(
        "/nonexistent/container.iso",
        "127.0.0.1",
        0,
        client_timeout,
        runtime_rsa_wrapper=rsa,
        settings=settings,
    )
    return RunningServer(server)


def stand_in_server(
    rsa: RSAWrapper, folder: Path, port_range: tuple[int, int], **overrides
) -> RunningServer:
    """A server on libvirt's test driver (its domains never boot), not started yet: a
    stand-in ISO in ``folder``, an in-memory journal unless ``database`` is given, its
    forwarders on loopback in ``port_range``; ``overrides`` are further Settings."""
    iso = folder / "stand-in.iso"
    iso.write_bytes(b"\0" * 1024)
    settings = Settings(
        **{
            "database": ":memory:",
            "libvirt_uri": "test:///default",
            "domain_type": "test",
            "container_memory": 128,
            "container_vcpus": 1,
            "port_range": port_range,
            "forward_bind_address": "127.0.0.1",
            "max_containers": 4,
            "max_lifetime": None,
            "max_idle_time": None,
            **overrides,
        }
    )
    server = ServerInterface(
        str(iso), "127.0.0.1", 0, 3, runtime_rsa_wrapper=rsa, settings=settings
    )
    return RunningServer(server)


def serve_stand_in(
    engine,
    client_ip: str = "127.0.0.9",
    token: str = "t" * 255,
    booted: Callable[[str], None] | None = None,
) -> tuple[str, str]:
    """A live container as a CREATE leaves it, without booting anything: a domain of the
    test driver, a real forwarder on a loopback port, stored credentials, registered.
    ``booted(uuid)`` runs once the domain is started, where a CREATE's endpoint shell
    works. Returns (uuid, client token)."""
    context = engine.context
    container_uuid = str(uuid.uuid4())
    # The first host's, as placement would choose on a one-host server: its slot, its
    # libvirt, its entry (an entry of another host would leave this slot pending).
    host = context.hosts.first.name
    assert context.registry.reserve_slot(host).get()
    container = start_container(context, container_uuid, host=host)
    container.create(CONTEXT_NORMAL_PROCESS).get()
    container.start_domain(CONTEXT_NORMAL_PROCESS).get()
    if booted is not None:
        booted(container_uuid)
    container.mark_administered("user_12345", CONTEXT_NORMAL_PROCESS).get()
    forwarder = start_forwarder(context, container_uuid, ("127.0.0.1", 9), owner=client_ip)
    forwarder.create(CONTEXT_NORMAL_PROCESS).get()
    forwarder.start_forwarding(CONTEXT_NORMAL_PROCESS).get()
    container.mark_serving(forwarder.port.get(), CONTEXT_NORMAL_PROCESS).get()
    context.journal.store_credentials(container_uuid, token)
    entry = LiveContainer(container_uuid, container, forwarder, client_ip=client_ip, host=host)
    assert context.registry.add(entry).get()
    return container_uuid, token


def serve_web(engine, **settings) -> WebServer:
    """The web front end of ``engine``, started on a free loopback port (``settings``:
    further WebSettings, such as ``enable_ui=True``); the caller stops it."""
    web_settings = WebSettings(bind_address="127.0.0.1", port=0, **settings)
    web = WebServer(build_app(engine, web_settings), web_settings)
    web.start()
    return web


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
