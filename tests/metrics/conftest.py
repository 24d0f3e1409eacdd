"""Fixtures of the metrics tests: real servers on loopback (test:///default, in-memory
journal, 2048-bit keys), the project's client, and ``/metrics`` served over real HTTP by
the web front end's own server on an ephemeral port."""

from __future__ import annotations

import pytest
import serverharness
from serverharness import RunningServer, bare_server

from anweddol_actors.client import Client
from anweddol_actors.core.crypto import RSAWrapper
from anweddol_actors.protocol.crypto import generate_private_key
from anweddol_actors.web.server import WebServer


@pytest.fixture(scope="session")
def server_rsa() -> RSAWrapper:
    return RSAWrapper(key_size=2048)


@pytest.fixture(scope="session")
def client_key():
    return generate_private_key(2048)


@pytest.fixture
def make_server(server_rsa):
    """``make_server(**settings)`` → a started server; stopped at teardown."""
    started: list[RunningServer] = []

    def factory(**overrides) -> RunningServer:
        running = bare_server(server_rsa, 5.0, **overrides)
        started.append(running)
        return running.start()

    yield factory
    for running in started:
        if running.thread.is_alive():
            running.stop()


@pytest.fixture
def serve_web():
    """``serve_web(engine, enable_metrics=True)`` → a started WebServer; stopped at teardown."""
    servers: list[WebServer] = []

    def factory(engine, enable_metrics: bool = True) -> WebServer:
        # The module's helper: this fixture has its name.
        web = serverharness.serve_web(engine, enable_metrics=enable_metrics)
        servers.append(web)
        return web

    yield factory
    for web in servers:
        web.stop()


@pytest.fixture
def client_for(client_key):
    def factory(running: RunningServer) -> Client:
        host, port = running.address
        return Client(host, port, timeout=10, private_key=client_key)

    return factory
