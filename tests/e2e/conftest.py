"""Fixtures for the end-to-end tests: real VMs through libvirt (qemu:///system), the dev
image and two broken variants built once per session, a real SQLite journal file, and a
server on 127.0.0.1 whose every domain, port and credential is checked at teardown."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from serverharness import RunningServer

from anweddol_actors.core.crypto import RSAWrapper
from anweddol_actors.core.server import ServerInterface
from anweddol_actors.engine.settings import Settings
from anweddol_actors.hypervisor import Hypervisor, ensure_daemons
from anweddol_actors.image.builder import build_image, make_traversable

IMAGE_ROOT = Path("/var/lib/anweddol_actors/test-images")
# Loopback ports for the forwarders and for QEMU's forwards: away from the guest tests'.
FORWARDER_PORTS = (41000, 41999)
GUEST_PORTS = (42000, 42999)


# Per test: libvirt's event-loop thread runs while any connection is open (tests/hypervisor
# checks that closing the last connection ends it), and a connection does not outlive a
# libvirtd restart, which some tests do.
@pytest.fixture
def qemu():
    ensure_daemons("qemu:///system")
    hypervisor = Hypervisor("qemu:///system")
    yield hypervisor
    hypervisor.close()


@pytest.fixture(scope="session")
def images():
    make_traversable(IMAGE_ROOT)
    folder = Path(tempfile.mkdtemp(prefix="e2e-", dir=IMAGE_ROOT))
    folder.chmod(0o755)
    failing = folder / "failing-setup.sh"
    failing.write_text("#!/bin/sh\necho 'setup refused by the test image' >&2\nexit 3\n")
    failing.chmod(0o755)
    built = {
        "dev": build_image(folder / "dev.iso"),
        "wrong-endpoint-password": build_image(folder / "badpw.iso", endpoint_password="nope"),
        "failing-setup": build_image(folder / "failing.iso", setup_script=failing),
        "folder": folder,
    }
    yield built
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def rsa():
    return RSAWrapper(key_size=2048)


@pytest.fixture
def make_vm_server(qemu, images, rsa, tmp_path):
    """Factory for a started server serving real containers; stopped and checked at teardown."""
    running_servers: list[RunningServer] = []

    def factory(iso: str | Path | None = None, **overrides) -> RunningServer:
        settings = Settings(
            iso_path=str(iso or images["dev"]),
            database=str(tmp_path / f"journal-{len(running_servers)}.sqlite3"),
            libvirt_uri="qemu:///system",
            network_mode="user",
            container_memory=256,
            container_vcpus=1,
            port_range=FORWARDER_PORTS,
            forward_bind_address="127.0.0.1",
            guest_port_range=GUEST_PORTS,
            ready_timeout=120,
            reaper_poll_interval=2.0,
            # No warm pool (the engine's default, said here): on 2 cores each test would
            # boot an extra VM in the background. The pool's own tests pass a size.
            warm_pool_size=0,
        )
        for key, value in overrides.items():
            setattr(settings, key, value)
        server = ServerInterface(
            settings.iso_path, "127.0.0.1", 0, 10, runtime_rsa_wrapper=rsa, settings=settings
        )
        running = RunningServer(server)
        running_servers.append(running)
        return running.start()

    yield factory
    for running in running_servers:
        if running.thread.is_alive():
            running.stop()
    # stopServer stops every container: nothing these servers made may be left in libvirt
    # (each server marks its domains with its own owner id; others' are not ours to judge).
    for running in running_servers:
        assert qemu.list_marked(owner=running.engine.context.owner) == []


def pytest_terminal_summary(terminalreporter):
    """The kill -9 table of test_e2e_crash.py (step × recovery policy → outcome)."""
    crash = sys.modules.get("test_e2e_crash")
    table = getattr(crash, "CRASH_TABLE", None)
    if not table:
        return
    steps = list(dict.fromkeys(step for step, _ in table))
    modes = list(dict.fromkeys(mode for _, mode in table))
    terminalreporter.section("kill -9 at every step (outcome after restart)")
    width = max(len(step) for step in steps)
    terminalreporter.write_line(f"{'step':<{width}}  " + "  ".join(f"{m:<10}" for m in modes))
    for step in steps:
        cells = "  ".join(f"{table.get((step, mode), '-'):<10}" for mode in modes)
        terminalreporter.write_line(f"{step:<{width}}  {cells}")
