"""Forwarder throughput and setup latency: direct loopback vs our Relay vs socat, in one run.

    .venv/bin/python benchmarks/forwarder_throughput.py [--size-mib 512] [--streams 8]

The target (a sink that counts bytes and acknowledges, plus an echo server) and the sender run
in their own processes, so that neither competes with the relay's thread for the GIL; the
relay runs in this process, exactly as it would in the server. socat is started with the
seed's command line (`TCP-LISTEN:P,bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:T`) and
killed by its own PID. Only 127.0.0.1 is used. Each measurement is repeated and the best
and median are printed; a global deadline bounds the run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from anweddol_actors.forwarding import Relay, reserve_port

HOST = "127.0.0.1"
MIB = 1024 * 1024
BLOCK = MIB  # sender write size
ACK = b"K"


# -- target side (own process) ------------------------------------------------------------


def _sink_conn(conn: socket.socket) -> None:
    buf = bytearray(BLOCK)
    total = 0
    with conn:
        while True:
            n = conn.recv_into(buf)
            if not n:
                break
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


def target_process(ports: mp.Queue, stop: mp.Event) -> None:
    sink = socket.create_server((HOST, 0), backlog=128)
    echo = socket.create_server((HOST, 0), backlog=128)
    for listener, handler in ((sink, _sink_conn), (echo, _echo_conn)):
        threading.Thread(target=_serve, args=(listener, handler), daemon=True).start()
    ports.put((sink.getsockname()[1], echo.getsockname()[1]))
    stop.wait()


# -- client side (own process) -------------------------------------------------------------


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
    received = int.from_bytes(reply[1:9], "big") if reply[:1] == ACK else -1
    results[index] = received


def bulk(port: int, total: int, streams: int) -> float:
    """Send `total` bytes over `streams` parallel connections; return MiB/s end to end."""
    per = total // streams
    results: list[int] = [0] * streams
    threads = [
        threading.Thread(target=_send_stream, args=(port, per, results, i)) for i in range(streams)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if results != [per] * streams:
        raise RuntimeError(f"sink received {results}, expected {per} per stream")
    return per * streams / MIB / elapsed


def setup_latency(port: int, count: int) -> list[float]:
    """Connect, send one byte, read it back, close; seconds for each of `count` rounds."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(b"x")
            if sock.recv(1) != b"x":
                raise RuntimeError("echo mismatch")
        samples.append(time.perf_counter() - start)
    return samples


def client_process(jobs: mp.Queue, results: mp.Queue) -> None:
    while (job := jobs.get()) is not None:
        kind, args = job
        try:
            results.put(("ok", bulk(*args) if kind == "bulk" else setup_latency(*args)))
        except Exception as exc:  # reported to the parent, which fails the run
            results.put(("error", repr(exc)))


# -- orchestration -------------------------------------------------------------------------


class Client:
    """The sender process: runs one job at a time, bounded by the run's deadline."""

    def __init__(self, ctx: mp.context.BaseContext, deadline: float) -> None:
        self.jobs: mp.Queue = ctx.Queue()
        self.results: mp.Queue = ctx.Queue()
        self.deadline = deadline
        self.proc = ctx.Process(target=client_process, args=(self.jobs, self.results))
        self.proc.start()

    def run(self, kind: str, *args: object) -> object:
        self.jobs.put((kind, args))
        status, value = self.results.get(timeout=max(1.0, self.deadline - time.monotonic()))
        if status != "ok":
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        self.jobs.put(None)
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


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
def via_relay(target: int, splice: bool | None) -> Iterator[int]:
    relay = Relay(reserve_port((20000, 30000), HOST), (HOST, target), splice=splice)
    relay.start()
    try:
        yield relay.port
    finally:
        relay.stop()


def _pump_blocking(src: socket.socket, dst: socket.socket) -> None:
    buf = bytearray(256 * 1024)
    view = memoryview(buf)
    try:
        while n := src.recv_into(buf):
            dst.sendall(view[:n])
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _thread_per_connection(listener: socket.socket, target: int) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # listener closed: stop
        upstream = socket.create_connection((HOST, target))
        pumps = [
            threading.Thread(target=_pump_blocking, args=(a, b), daemon=True)
            for a, b in ((client, upstream), (upstream, client))
        ]
        for t in pumps:
            t.start()

        def reap(pumps: list[threading.Thread] = pumps, socks=(client, upstream)) -> None:
            for t in pumps:
                t.join()
            for s in socks:
                s.close()

        threading.Thread(target=reap, daemon=True).start()


@contextmanager
def via_threads(target: int) -> Iterator[int]:
    """The alternative to the event loop: two blocking threads per connection (measured only
    to justify the design; never used by the server)."""
    listener = reserve_port((20000, 30000), HOST)
    acceptor = threading.Thread(target=_thread_per_connection, args=(listener, target))
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocking accept()
        listener.close()
        acceptor.join()


@contextmanager
def via_socat(target: int) -> Iterator[int]:
    # socat must bind the port itself: take a free one and hand it over (benchmark only; the
    # race this leaves is what reserve_port exists to avoid in the server).
    probe = reserve_port((30000, 40000), HOST)
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen(
        [
            "socat",
            f"TCP-LISTEN:{port},bind={HOST},reuseaddr,fork",
            f"TCP:{HOST}:{target}",
        ],
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
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512, help="bytes per bulk run (MiB)")
    parser.add_argument("--streams", type=int, default=8, help="parallel streams")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    parser.add_argument("--latency-count", type=int, default=300, help="setup rounds")
    parser.add_argument("--deadline", type=float, default=300.0, help="whole run, seconds")
    parser.add_argument("--only", nargs="*", help="measure only these paths (and direct)")
    parser.add_argument(
        "--skip-socat", action="store_true", help="do not measure socat (if not installed)"
    )
    args = parser.parse_args(argv)

    deadline = time.monotonic() + args.deadline
    ctx = mp.get_context("spawn")
    ports: mp.Queue = ctx.Queue()
    stop = ctx.Event()
    target = ctx.Process(target=target_process, args=(ports, stop), daemon=True)
    target.start()
    sink_port, echo_port = ports.get(timeout=30)
    client = Client(ctx, deadline)

    paths: dict[str, Callable[[int], object]] = {
        "direct": via_direct,
        "relay": lambda t: via_relay(t, splice=None),
        "relay-copy": lambda t: via_relay(t, splice=False),
        "relay-splice": lambda t: via_relay(t, splice=True),
        "threads": via_threads,
    }
    if not args.skip_socat:
        paths["socat"] = via_socat

    if args.only:
        paths = {k: v for k, v in paths.items() if k == "direct" or k in args.only}
    total = args.size_mib * MIB
    rows: dict[str, dict[str, float]] = {}
    try:
        for name, via in paths.items():
            row: dict[str, float] = {}
            for streams in (1, args.streams):
                runs = []
                for _ in range(args.repeat):
                    with via(sink_port) as port:
                        runs.append(client.run("bulk", port, total, streams))
                row[f"bulk{streams}"] = max(runs)
                row[f"bulk{streams}_median"] = statistics.median(runs)
            with via(echo_port) as port:
                client.run("latency", port, 20)  # warm-up
                samples = sorted(client.run("latency", port, args.latency_count))
            row["lat_p50"] = samples[len(samples) // 2] * 1e6
            row["lat_p99"] = samples[int(len(samples) * 0.99) - 1] * 1e6
            rows[name] = row
            print(
                f"{name:13s} 1 stream {row['bulk1']:8.0f} MiB/s (median {row['bulk1_median']:.0f})"
                f"  {args.streams} streams {row[f'bulk{args.streams}']:8.0f} MiB/s"
                f" (median {row[f'bulk{args.streams}_median']:.0f})"
                f"  setup p50 {row['lat_p50']:6.0f} us  p99 {row['lat_p99']:6.0f} us",
                flush=True,
            )
    finally:
        client.close()
        stop.set()
        target.join(5)
        if target.is_alive():
            target.kill()

    print(f"\nratios ({args.size_mib} MiB per run, best of {args.repeat}):")
    keys = [("bulk1", "1 stream"), (f"bulk{args.streams}", f"{args.streams} streams")]
    for relay in [k for k in rows if k not in ("direct", "socat")]:
        for key, label in keys:
            line = f"  {relay}/direct {label}: {rows[relay][key] / rows['direct'][key]:.2f}"
            if "socat" in rows:
                line += f"   {relay}/socat {label}: {rows[relay][key] / rows['socat'][key]:.2f}"
            print(line)
        lat = rows[relay]["lat_p50"]
        line = f"  {relay} setup p50: +{lat - rows['direct']['lat_p50']:.0f} us over direct"
        if "socat" in rows:
            line += f", {rows['socat']['lat_p50'] / lat:.1f}x faster than socat"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
