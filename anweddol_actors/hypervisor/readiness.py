"""Is the guest ready? An SSH banner, not a TCP connect.

With QEMU user networking, QEMU itself accepts connections on the forwarded port long
before the guest listens (IMAGE-NOTES.md): only the ``SSH-`` banner proves sshd is up.
"""

from __future__ import annotations

import socket
import time

from anweddol_actors.hypervisor.errors import GuestTimeout

BANNER_PREFIX = b"SSH-"
# Short socket timeouts so a silent forward (QEMU accepting for a guest still booting)
# costs little per attempt; the poll interval keeps a boot from turning into a busy loop.
PROBE_TIMEOUT = 0.3
POLL_INTERVAL = 0.1


def probe_ssh_banner(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """One attempt: True when something on host:port greets us with an SSH banner."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = b""
            while len(data) < len(BANNER_PREFIX):
                chunk = sock.recv(64)
                if not chunk:
                    return False
                data += chunk
            return data.startswith(BANNER_PREFIX)
    except OSError:
        return False


def wait_for_ssh_banner(
    host: str, port: int, deadline: float | None = None, *, timeout: float | None = None
) -> float:
    """Poll host:port until it sends an SSH banner; return the seconds waited.

    ``deadline`` is an absolute ``time.monotonic()`` value (so one deadline can span several
    steps of a CREATE); ``timeout`` is the same in seconds from now. Exactly one is needed.
    Raises GuestTimeout when the deadline passes first.
    """
    start = time.monotonic()
    if (deadline is None) == (timeout is None):
        raise ValueError("give exactly one of deadline (time.monotonic() value) or timeout")
    if deadline is None:
        deadline = start + float(timeout)  # type: ignore[arg-type]
    while True:
        attempt_start = time.monotonic()
        remaining = deadline - attempt_start
        if remaining <= 0:
            raise GuestTimeout(
                f"no SSH banner from {host}:{port} after {attempt_start - start:.1f}s"
            )
        if probe_ssh_banner(host, port, timeout=min(PROBE_TIMEOUT, remaining)):
            return time.monotonic() - start
        time.sleep(max(0.0, min(POLL_INTERVAL, deadline - time.monotonic())))
