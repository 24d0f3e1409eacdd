"""Making libvirt go away and come back, for the tests of hypervisor loss (and the soak).

Two ways:

- :func:`restart_libvirtd` / :func:`libvirtd_stopped`: the real daemon started by
  scripts/start-libvirt (pid file /run/libvirtd.pid) is sent SIGTERM, awaited (bounded),
  and started again by that script. Running QEMU guests survive (libvirtd reattaches
  them). Only in ``@pytest.mark.vm`` tests: the vm lock keeps other runs' VM tests off
  while the daemon is away. Whatever happens, the daemon is started again.
- :class:`SocketRelay`: a unix socket relaying every connection to libvirtd's socket,
  reached as ``qemu:///system?socket=PATH``. Stopping the relay cuts every connection
  through it, exactly as a daemon that exits does for its clients (EOF on the socket), and
  a stopped relay is a real endpoint nobody listens on. libvirtd itself is never touched,
  so these tests need no vm lock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from anweddol_actors.hypervisor.connection import OPEN_TIMEOUT, RECONNECT_MAX_DELAY

PID_FILE = Path("/run/libvirtd.pid")
SYSTEM_SOCKET = "/run/libvirt/libvirt-sock"
# How long a Hypervisor may take to reconnect once libvirt answers again: tries at 0.5, 1,
# 2, 4, 8, 10, ... s after the loss, each attempt bounded.
RECONNECT_BOUND = 2 * RECONNECT_MAX_DELAY + OPEN_TIMEOUT
START_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "start-libvirt"


def libvirtd_pid() -> int | None:
    """The running libvirtd's PID from its pid file, or None."""
    try:
        pid = int(PID_FILE.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # A zombie (its parent does not reap it) is gone for our purpose.
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state


def stop_libvirtd(timeout: float = 30.0) -> None:
    """SIGTERM the running libvirtd (by the PID in its pid file) and wait until it is gone."""
    pid = libvirtd_pid()
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"libvirtd (pid {pid}) still running {timeout:g} s after SIGTERM")
        time.sleep(0.05)


def start_libvirtd(timeout: float = 60.0) -> None:
    """Start libvirtd (scripts/start-libvirt) and wait until qemu:///system answers."""
    subprocess.run(
        ["bash", str(START_SCRIPT)],
        check=True,
        timeout=timeout,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "START_LIBVIRT_TIMEOUT": str(int(timeout))},
    )


def restart_libvirtd() -> None:
    """Stop libvirtd and start it again; it runs afterwards whatever happened."""
    try:
        stop_libvirtd()
    finally:
        start_libvirtd()


@contextlib.contextmanager
def libvirtd_stopped() -> Iterator[None]:
    """libvirtd stopped inside the block, started again on leaving it (even on error)."""
    try:
        stop_libvirtd()
        yield
    finally:
        start_libvirtd()


class SocketRelay:
    """A unix socket at a fresh path relaying each connection to ``target``."""

    def __init__(self, target: str = SYSTEM_SOCKET) -> None:
        self.target = target
        # Short: unix socket paths are limited to 107 bytes.
        self._folder = tempfile.mkdtemp(prefix="relay-", dir="/tmp")
        self.path = os.path.join(self._folder, "libvirt.sock")
        self._listener: socket.socket | None = None
        self._accepter: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.path}"

    def start(self) -> SocketRelay:
        self._stopping.clear()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(16)
        listener.settimeout(0.1)
        self._listener = listener
        self._accepter = threading.Thread(target=self._accept, name="relay-accept", daemon=True)
        self._accepter.start()
        return self

    def stop(self) -> None:
        """Cut every relayed connection and stop listening (the path is removed)."""
        self._stopping.set()
        if self._accepter is not None:
            self._accepter.join(timeout=5)
            self._accepter = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with self._lock:
            sockets, self._sockets = self._sockets, set()
            threads, self._threads = self._threads, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in threads:
            thread.join(timeout=5)

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            os.rmdir(self._folder)

    def __enter__(self) -> SocketRelay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                upstream.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
                for source, sink in ((client, upstream), (upstream, client)):
                    thread = threading.Thread(
                        target=self._pump, args=(source, sink), name="relay-pump", daemon=True
                    )
                    self._threads.append(thread)
                    thread.start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                chunk = source.recv(65536)
                if not chunk:
                    break
                sink.sendall(chunk)
            except OSError:
                break
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
