"""What an idle client connection costs the server: threads, resident memory, descriptors.

``count`` loopback connections are opened to the running server and left silent (the
server waits for the key exchange); the server's /proc figures are read once its thread
count has settled, against the same server with none open. Connections come from several
loopback source addresses (127.0.1.1-64), as from different clients.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from anweddol_actors.bench.server import LOOPBACK, sample, settled_status
from anweddol_actors.bench.stats import summary

SOURCES = [f"127.0.1.{i}" for i in range(1, 65)]


def _refused(sockets: list[socket.socket]) -> int:
    """Connections the server closed at once (EOF or reset without a word)."""
    count = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            if sock.recv(1) == b"":
                count += 1
        except BlockingIOError:
            pass
        except OSError:
            count += 1
    return count


def measure(
    pid: int, port: int, count: int, stat: Callable[[], Any] | None = None
) -> dict[str, Any]:
    """The ``idle_connections`` section; with ``stat`` (a STAT request), also the latency
    of 20 sequential STATs while the idle connections are open (no head-of-line blocking:
    the original took 9.05 s for a STAT behind one idle connection)."""
    before = settled_status(pid)
    sockets: list[socket.socket] = []
    try:
        for index in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((SOURCES[index % len(SOURCES)], 0))
            sock.settimeout(10)
            sock.connect((LOOPBACK, port))
        with_them = settled_status(pid)
        stat_samples = sample(stat) if stat is not None else []
        held = max(count - _refused(sockets), 1)
    finally:
        for sock in sockets:
            sock.close()
    # Let the sessions end before the next measurement (bounded).
    deadline = time.monotonic() + 30
    while settled_status(pid, seconds=0.3)["threads"] > before["threads"] + 2:
        if time.monotonic() > deadline:
            break
    return {
        "connections": count,
        "held": held,
        "before": before,
        "with_connections": with_them,
        "threads_per_connection": (with_them["threads"] - before["threads"]) / held,
        "rss_kib_per_connection": (with_them["rss_kib"] - before["rss_kib"]) / held,
        "fds_per_connection": (with_them["fds"] - before["fds"]) / held,
        "stat_while_open": summary(stat_samples),
    }
