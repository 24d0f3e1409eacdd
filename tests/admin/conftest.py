"""Fixtures for the admin channel's tests: a real server on libvirt's test driver (no VM),
an in-memory journal, and its admin socket under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from adminsupport import FORWARDER_PORTS
from serverharness import RunningServer

from anweddol_actors.admin.server import AdminServer
from anweddol_actors.core.crypto import RSAWrapper
from anweddol_actors.core.server import ServerInterface
from anweddol_actors.engine.settings import Settings


@pytest.fixture(scope="session")
def rsa() -> RSAWrapper:
    return RSAWrapper(key_size=2048)


@pytest.fixture
def running(rsa, tmp_path):
    """A started server on test:///default; stopped at teardown."""
    iso = tmp_path / "stand-in.iso"
    iso.write_bytes(b"\0" * 1024)
    settings = Settings(
        database=":memory:",
        libvirt_uri="test:///default",
        domain_type="test",
        container_memory=128,
        container_vcpus=1,
        port_range=FORWARDER_PORTS,
        forward_bind_address="127.0.0.1",
        max_containers=4,
        max_lifetime=None,
        max_idle_time=None,
    )
    server = ServerInterface(
        str(iso), "127.0.0.1", 0, 3, runtime_rsa_wrapper=rsa, settings=settings
    )
    running = RunningServer(server).start()
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
