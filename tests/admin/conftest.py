"""Fixtures for the admin channel's tests: a real server on libvirt's test driver (no VM),
an in-memory journal, and its admin socket under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from adminsupport import FORWARDER_PORTS
from serverharness import stand_in_server

from anweddol_actors.admin.server import AdminServer
from anweddol_actors.core.crypto import RSAWrapper


@pytest.fixture(scope="session")
def rsa() -> RSAWrapper:
    return RSAWrapper(key_size=2048)


@pytest.fixture
def running(rsa, tmp_path):
    """A started server on test:///default; stopped at teardown."""
    running = stand_in_server(rsa, tmp_path, FORWARDER_PORTS).start()
    yield running
    if running.thread.is_alive():
        running.stop()


@pytest.fixture
def socket_path(tmp_path) -> Path:
    return tmp_path / "run" / "admin.sock"


@pytest.fixture
def admin(running, socket_path):
    """The admin channel of ``running``, started; closed at teardown."""
    channel = AdminServer(running.engine, str(socket_path)).start()
    yield channel
    channel.close()
