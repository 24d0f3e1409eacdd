"""What an idle client connection costs the server: OS threads, resident memory, descriptors.

Not a test: it prints numbers. The server runs in a child process (test:///default libvirt,
a journal file); this process opens N idle loopback connections (connected, silent: the
server waits for the key exchange) and reads the child's /proc/PID/status and fd table
once the count has settled. The baseline is the same server with 0 connections, after one
STAT has warmed it up.

    .venv/bin/python benchmarks/idle_connections.py [--counts 100,500,1000] [--tree PATH]
                                                    [--caps] [--flood 300]

``--tree`` imports the server from another checkout (to measure a "before"). Without
``--caps`` the connection caps are lifted (the per-connection cost is what is measured);
with them the configured defaults apply (512 in all, 16 per address) and the script
reports how many connections were refused. Connections come from 64 loopback source
addresses (127.0.1.1-64), as from different clients.

``--flood N`` then opens and at once closes N connections (each a session that starts,
fails and ends without a request) and reports how fast the server journals them: each
such session wrote one fsync'd transaction per transition before, one in all now.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import socket
import sqlite3
import sys
import tempfile
import time

SOURCES = [f"127.0.1.{i}" for i in range(1, 65)]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="100,500,1000")
    parser.add_argument("--tree", default=os.path.join(os.path.dirname(__file__), ".."))
    parser.add_argument("--caps", action="store_true", help="keep the default caps")
    parser.add_argument("--flood", type=int, default=300)
    return parser.parse_args()


ARGS = parse() if __name__ == "__main__" else None
if ARGS is not None:
    sys.path.insert(0, os.path.abspath(ARGS.tree))

from benchserver import start_server, stop_server  # noqa: E402

from anweddol_actors.client import Client  # noqa: E402


def serve(port_queue, stop_event, journal_path: str, caps: bool) -> None:
    from anweddol_actors.engine.settings import Settings

    limits = {} if caps else {"max_connections": None, "max_connections_per_address": None}
    settings = Settings(
        database=journal_path,
        libvirt_uri="test:///default",
        # Long enough that no idle connection is cut while it is measured.
        request_deadline=600,
        **limits,
    )
    server, thread = start_server(settings, client_timeout=600)
    port_queue.put(server.listen_address[1])
    stop_event.wait()
    stop_server(server, thread)


def status(pid: int) -> tuple[int, int, int]:
    """(threads, RSS in KiB, open descriptors) of process ``pid``."""
    fields = {}
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return int(fields["Threads"][0]), int(fields["VmRSS"][0]), len(os.listdir(f"/proc/{pid}/fd"))


def settled(pid: int, seconds: float = 1.5, timeout: float = 60) -> tuple[int, int, int]:
    """The child's figures once its thread count has not moved for ``seconds``."""
    deadline = time.monotonic() + timeout
    last, since = status(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = status(pid)
        if now[0] != last[0]:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= seconds:
            return now
    return status(pid)


def open_idle(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for index in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((SOURCES[index % len(SOURCES)], 0))
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        sockets.append(sock)
    return sockets


def refused(sockets: list[socket.socket]) -> int:
    """Connections the server closed at once (EOF or reset without a word)."""
    count = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            if sock.recv(1) == b"":
                count += 1
        except BlockingIOError:
            pass
        except ConnectionResetError:
            count += 1
    return count


def sessions_ended(journal_path: str) -> int:
    with sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True, timeout=30) as db:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM transitions WHERE kind = 'session' AND dest = 'destroyed'"
        ).fetchone()
    return count


def flood(port: int, journal_path: str, count: int) -> None:
    before = sessions_ended(journal_path)
    started = time.perf_counter()
    for index in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((SOURCES[index % len(SOURCES)], 0))
        sock.connect(("127.0.0.1", port))
        sock.close()
    deadline = time.monotonic() + 300
    while sessions_ended(journal_path) < before + count and time.monotonic() < deadline:
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    print(
        f"flood: {count} connect-and-hang-up connections journalled in {elapsed:.2f} s"
        f" ({count / elapsed:.0f}/s)"
    )


def main() -> None:
    args = ARGS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the child inherits it
    counts = [int(n) for n in args.counts.split(",")]
    workdir = tempfile.mkdtemp(prefix="anweddol-idle-")
    ctx = multiprocessing.get_context("fork")
    port_queue, stop_event = ctx.Queue(), ctx.Event()
    journal_path = os.path.join(workdir, "j.sqlite3")
    child = ctx.Process(target=serve, args=(port_queue, stop_event, journal_path, args.caps))
    child.start()
    try:
        port = port_queue.get(timeout=60)
        assert Client("127.0.0.1", port, timeout=30).stat()["success"]
        base = settled(child.pid)
        print(f"server from {os.path.abspath(args.tree)}; caps {'on' if args.caps else 'off'}")
        print(f"baseline, 0 connections: {base[0]} threads, {base[1] / 1024:.1f} MiB RSS,")
        print(f"  {base[2]} fds (nofile limit {hard})")
        print(" conns  refused  threads  RSS MiB  fds   threads/conn  RSS KiB/conn")
        for count in counts:
            sockets = open_idle(port, count)
            try:
                threads, rss, fds = settled(child.pid)
                cut = refused(sockets)
                held = max(count - cut, 1)
                print(
                    f"{count:6d} {cut:8d} {threads:8d} {rss / 1024:8.1f} {fds:5d}"
                    f" {(threads - base[0]) / held:13.2f} {(rss - base[1]) / held:13.1f}"
                )
            finally:
                for sock in sockets:
                    sock.close()
            # Let the sessions end before the next count.
            deadline = time.monotonic() + 60
            while status(child.pid)[0] > base[0] + 2 and time.monotonic() < deadline:
                time.sleep(0.2)
        if args.flood:
            flood(port, journal_path, args.flood)
    finally:
        stop_event.set()
        child.join(timeout=120)
        if child.is_alive():
            child.kill()
            child.join()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
