"""Fixtures of the client tests: the shared 2048-bit keys and a tiny server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from client_support import TinyServer, default_handler
from protocol_support import client_key, server_key


@pytest.fixture
def tiny_server(server_key) -> Iterator[TinyServer]:
    server = TinyServer(server_key, default_handler)
    yield server
    server.close()


__all__ = ["client_key", "server_key", "tiny_server"]
