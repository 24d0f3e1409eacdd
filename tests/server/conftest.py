"""Fixtures for the server tests: a real ServerInterface on 127.0.0.1, an ephemeral port,
an in-memory journal, and 2048-bit keys (the protocol works with any size; 4096-bit key
generation would dominate the run time)."""

from __future__ import annotations

import pytest
from serverharness import RunningServer, bare_server

from anweddol_actors.core.crypto import RSAWrapper
from anweddol_actors.protocol.crypto import generate_private_key


@pytest.fixture(scope="session")
def server_rsa() -> RSAWrapper:
    return RSAWrapper(key_size=2048)


@pytest.fixture(scope="session")
def client_key():
    return generate_private_key(2048)


@pytest.fixture
def make_server(server_rsa):
    """Factory: ``make_server(**settings)`` → a started server; stopped at teardown."""
    started: list[RunningServer] = []

    def factory(start: bool = True, client_timeout: float = 3.0, **overrides) -> RunningServer:
        running = bare_server(server_rsa, client_timeout, **overrides)
        started.append(running)
        return running.start() if start else running

    yield factory
    for running in started:
        if running.thread.is_alive():
            running.stop()
