"""Readiness is an SSH banner: an accepting-but-silent port (QEMU's forward before the
guest listens) is not ready; a banner arriving later is seen promptly."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from anweddol_actors.hypervisor import GuestTimeout, probe_ssh_banner, wait_for_ssh_banner


class FakePort:
    """A loopback listener that stays silent until ``speak_after`` seconds, then sends
    ``banner`` to every connection (like QEMU's forward, then dropbear)."""

    def __init__(self, banner: bytes = b"SSH-2.0-dropbear_2022.83\r\n", speak_after=None):
        self.banner = banner
        self.speak_after = speak_after
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.start = time.monotonic()
        self.stopped = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            speaking = self.speak_after is not None and (
                time.monotonic() - self.start >= self.speak_after
            )
            if speaking:
                conn.sendall(self.banner)
            self.held.append(conn)  # silent ones stay open, like QEMU's forward

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def fake():
    ports: list[FakePort] = []

    def make(**kwargs) -> FakePort:
        ports.append(FakePort(**kwargs))
        return ports[-1]

    yield make
    for p in ports:
        p.close()


def test_silent_accepting_port_is_not_ready(fake):
    port = fake(speak_after=None)
    assert probe_ssh_banner("127.0.0.1", port.port) is False
    start = time.monotonic()
    with pytest.raises(GuestTimeout, match="no SSH banner"):
        wait_for_ssh_banner("127.0.0.1", port.port, timeout=1.0)
    assert time.monotonic() - start < 2.0


def test_banner_arriving_later_is_seen(fake):
    port = fake(speak_after=0.8)
    waited = wait_for_ssh_banner("127.0.0.1", port.port, deadline=time.monotonic() + 5)
    assert 0.7 <= waited < 2.5


def test_other_protocol_is_not_ssh(fake):
    port = fake(banner=b"HTTP/1.1 400 Bad Request\r\n\r\n", speak_after=0)
    assert probe_ssh_banner("127.0.0.1", port.port) is False


def test_closed_port_times_out():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    free = s.getsockname()[1]
    s.close()
    with pytest.raises(TimeoutError):
        wait_for_ssh_banner("127.0.0.1", free, timeout=0.5)


def test_exactly_one_of_deadline_or_timeout():
    with pytest.raises(ValueError):
        wait_for_ssh_banner("127.0.0.1", 1)
    with pytest.raises(ValueError):
        wait_for_ssh_banner("127.0.0.1", 1, time.monotonic() + 1, timeout=1)
