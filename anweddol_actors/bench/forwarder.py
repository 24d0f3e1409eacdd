"""Forwarder throughput and connection setup: our ``Relay`` against a direct loopback
connection and against socat, in one run.

The target (a sink that counts bytes and acknowledges, and an echo server) and the sender
each run in their own process (``python -m anweddol_actors.bench.forwarder target|sender``,
talking JSON lines over their pipes), so that neither competes with the relay's thread for
this process's GIL; the relay runs in this process, as it does in the server, built
through the forwarding package's public API (``reserve_port``, ``Relay``). socat is
started with the seed's command line (``TCP-LISTEN:P,bind=127.0.0.1,reuseaddr,fork
TCP:127.0.0.1:T``) and ended by its own PID. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from anweddol_actors.bench.server import BenchError, child_env
from anweddol_actors.bench.stats import ratio, summary
from anweddol_actors.forwarding import Relay, reserve_port

HOST = "127.0.0.1"
MIB = 1024 * 1024
BLOCK = MIB  # the sender's write size
ACK = b"K"
RELAY_PORTS = (48000, 48999)
SOCAT_PORTS = (49000, 49999)
SOCAT = "/usr/bin/socat"
JOB_BOUND = 120.0  # seconds for one job of the sender


# -- the target process ----------------------------------------------------------------------


def _sink_conn(conn: socket.socket) -> None:
    buf = bytearray(BLOCK)
    total = 0
    with conn:
        while n := conn.recv_into(buf):
            total += n
        conn.sendall(ACK + total.to_bytes(8, "big"))


def _echo_conn(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def _serve(listener: socket.socket, handler: Callable[[socket.socket], None]) -> None:
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handler, args=(conn,), daemon=True).start()


def target_main() -> None:
    """Sink and echo listeners; prints their ports, runs until its stdin closes."""
    sink = socket.create_server((HOST, 0), backlog=128)
    echo = socket.create_server((HOST, 0), backlog=128)
    for listener, handler in ((sink, _sink_conn), (echo, _echo_conn)):
        threading.Thread(target=_serve, args=(listener, handler), daemon=True).start()
    print(json.dumps([sink.getsockname()[1], echo.getsockname()[1]]), flush=True)
    sys.stdin.read()  # until the parent closes the pipe (or dies)


# -- the sender process -----------------------------------------------------------------------


def _send_stream(port: int, nbytes: int, results: list, index: int) -> None:
    block = memoryview(os.urandom(BLOCK))
    with socket.create_connection((HOST, port), timeout=60) as sock:
        left = nbytes
        while left:
            chunk = block[: min(left, BLOCK)]
            sock.sendall(chunk)
            left -= len(chunk)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while len(reply) < 9:
            data = sock.recv(9 - len(reply))
            if not data:
                break
            reply += data
    results[index] = int.from_bytes(reply[1:9], "big") if reply[:1] == ACK else -1


def bulk(port: int, total: int, streams: int) -> float:
    """Send ``total`` bytes over ``streams`` parallel connections; MiB/s end to end."""
    per = total // streams
    results: list[int] = [0] * streams
    threads = [
        threading.Thread(target=_send_stream, args=(port, per, results, i)) for i in range(streams)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOB_BOUND)
    elapsed = time.perf_counter() - start
    if results != [per] * streams:
        raise BenchError(f"the sink received {results}, expected {per} per stream")
    return per * streams / MIB / elapsed


def setup_latency(port: int, count: int) -> list[float]:
    """Connect, send one byte, read it back, close: seconds of each of ``count`` rounds."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(b"x")
            if sock.recv(1) != b"x":
                raise BenchError("echo mismatch")
        samples.append(time.perf_counter() - start)
    return samples


def sender_main() -> None:
    """Reads jobs (JSON lines) on stdin, answers each with one JSON line."""
    for line in sys.stdin:
        kind, args = json.loads(line)
        try:
            value = bulk(*args) if kind == "bulk" else setup_latency(*args)
            print(json.dumps(["ok", value]), flush=True)
        except Exception as exc:  # reported to the parent, which fails the run
            print(json.dumps(["error", repr(exc)]), flush=True)


# -- this process -----------------------------------------------------------------------------


class Helper:
    """One helper process (``target`` or ``sender``), ended by its PID."""

    def __init__(self, role: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "anweddol_actors.bench.forwarder", role],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        self._lines: list[str] = []
        self._ready = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._ready:
                self._lines.append(line)
                self._ready.notify_all()
        with self._ready:
            self._ready.notify_all()

    def line(self, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self._ready:
            while not self._lines:
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise BenchError(
                        f"the forwarder benchmark's helper gave no answer ({left:.0f})"
                    )
                self._ready.wait(min(left, 0.5))
            return json.loads(self._lines.pop(0))

    def run(self, kind: str, *args: Any) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps([kind, args]) + "\n")
        self.process.stdin.flush()
        status, value = self.line(JOB_BOUND)
        if status != "ok":
            raise BenchError(value)
        return value

    def close(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _wait_listening(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@contextmanager
def via_direct(target: int) -> Iterator[int]:
    yield target


@contextmanager
def via_relay(target: int) -> Iterator[int]:
    relay = Relay(reserve_port(RELAY_PORTS, HOST), (HOST, target))
    relay.start()
    try:
        yield relay.port
    finally:
        relay.stop(timeout=10)


@contextmanager
def via_socat(target: int) -> Iterator[int]:
    # socat binds the port itself: take a free one and hand it over (a benchmark only; the
    # race this leaves is what reserve_port exists to avoid in the server).
    probe = reserve_port(SOCAT_PORTS, HOST)
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen(
        [SOCAT, f"TCP-LISTEN:{port},bind={HOST},reuseaddr,fork", f"TCP:{HOST}:{target}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port)
        yield port
    finally:
        proc.terminate()  # its own PID only; forked children exit when their peers close
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def measure(*, size_mib: int, streams: int, repeat: int, setup_count: int) -> dict[str, Any]:
    """The ``forwarder`` section: per path (direct, relay, socat when installed) the best
    MiB/s of ``repeat`` runs at 1 and ``streams`` streams, and the setup latency."""
    paths: dict[str, Callable[[int], Any]] = {"direct": via_direct, "relay": via_relay}
    if shutil.which(SOCAT):
        paths["socat"] = via_socat
    target, sender = Helper("target"), Helper("sender")
    rows: dict[str, dict[str, Any]] = {}
    try:
        sink_port, echo_port = target.line(30)
        total = size_mib * MIB
        for name, via in paths.items():
            row: dict[str, Any] = {}
            for count in (1, streams):
                runs = []
                for _ in range(repeat):
                    with via(sink_port) as port:
                        runs.append(sender.run("bulk", port, total, count))
                row[f"mib_s_{count}_stream{'s' if count > 1 else ''}"] = max(runs)
            with via(echo_port) as port:
                sender.run("latency", port, 10)  # warm up
                samples = sender.run("latency", port, setup_count)
            row["setup"] = summary(samples)
            row["setup_samples"] = samples
            rows[name] = row
    finally:
        sender.close()
        target.close()
    key = f"mib_s_{streams}_streams"
    relay = rows["relay"]
    return {
        "size_mib": size_mib,
        "streams": streams,
        "repeat": repeat,
        "paths": rows,
        "relay_vs_direct": ratio(relay[key], rows["direct"][key]),
        "relay_vs_socat": ratio(relay[key], rows["socat"][key]) if "socat" in rows else None,
        "relay_vs_direct_1_stream": ratio(
            relay["mib_s_1_stream"], rows["direct"]["mib_s_1_stream"]
        ),
        "relay_vs_socat_1_stream": ratio(relay["mib_s_1_stream"], rows["socat"]["mib_s_1_stream"])
        if "socat" in rows
        else None,
    }


if __name__ == "__main__":
    {"target": target_main, "sender": sender_main}[sys.argv[1]]()
