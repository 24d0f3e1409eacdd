"""STAT throughput and latency on loopback, against the RSA operation rate.

Not a test: it prints numbers. The server runs in a child process (its own GIL) with an
RSA-4096 key, as in production; the clients run as threads here, each with its own
connection per request, exactly as deployed clients do.

    .venv/bin/python benchmarks/stat_latency.py [--seconds 5] [--client-bits 4096]

Prints, for 1, 8 and 64 concurrent clients: requests/s, p50 and p99 latency; the
server's RSA-4096 OAEP decrypt rate measured in the same run and the ratio of the two
(one STAT costs the server one RSA decrypt, so that rate is the ceiling); and the
latency of one STAT while 100 idle connections are open.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchserver import end_child, sample, start_server, stop_server  # noqa: E402

from anweddol_actors.client import Client  # noqa: E402
from anweddol_actors.protocol.crypto import (  # noqa: E402
    generate_private_key,
    rsa_oaep_decrypt,
    rsa_oaep_encrypt,
)


def serve(port_queue, stop_event, pem: bytes, client_timeout: float, journal_path: str) -> None:
    from anweddol_actors.engine.settings import Settings

    # A real journal file (WAL, fsync per transition), as a deployed server has.
    settings = Settings(database=journal_path, libvirt_uri="test:///default")
    server, thread = start_server(settings, pem=pem, client_timeout=client_timeout)
    port_queue.put(server.listen_address[1])
    stop_event.wait()
    stop_server(server, thread)


def rsa_decrypt_rate(key, seconds: float = 2.0) -> float:
    block = rsa_oaep_encrypt(key.public_key(), os.urandom(48))
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        rsa_oaep_decrypt(key, block)
        count += 1
    return count / (time.perf_counter() - started)


def run_load(port: int, concurrency: int, seconds: float, client_key) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    errors: list[BaseException] = []

    def worker() -> None:
        client = Client("127.0.0.1", port, timeout=30, private_key=client_key)
        mine = []
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                response = client.stat()
            except Exception as exc:  # counted, reported
                errors.append(exc)
                continue
            assert response["success"]
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        print(f"  ({len(errors)} errors, first: {errors[0]!r})")
    return len(latencies) / elapsed, latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per concurrency level")
    parser.add_argument("--client-bits", type=int, default=4096)
    args = parser.parse_args()

    server_key = generate_private_key(4096)
    from anweddol_actors.protocol.crypto import private_pem

    client_key = generate_private_key(args.client_bits)
    decrypts = rsa_decrypt_rate(server_key)
    print(f"RSA-4096 OAEP decrypt (this process): {decrypts:.0f} ops/s")

    workdir = tempfile.mkdtemp(prefix="stat-bench-")
    journal_file = os.path.join(workdir, "journal.sqlite3")
    ctx = multiprocessing.get_context("spawn")
    port_queue, stop_event = ctx.Queue(), ctx.Event()
    process = ctx.Process(
        target=serve,
        args=(port_queue, stop_event, private_pem(server_key), 60.0, journal_file),
    )
    process.start()
    try:
        port = port_queue.get(timeout=60)
        Client("127.0.0.1", port, timeout=30, private_key=client_key).stat()  # warm up
        print(f"client key: RSA-{args.client_bits}; server: 127.0.0.1:{port}, own process")
        print(f"{'clients':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'req/s ÷ decrypt/s':>18}")
        for concurrency in (1, 8, 64):
            rate, latencies = run_load(port, concurrency, args.seconds, client_key)
            print(
                f"{concurrency:>8} {rate:>8.1f} {percentile(latencies, 0.5) * 1000:>8.1f} "
                f"{percentile(latencies, 0.99) * 1000:>8.1f} {rate / decrypts:>18.2f}"
            )
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
        time.sleep(0.5)
        client = Client("127.0.0.1", port, timeout=30, private_key=client_key)
        samples = sample(client.stat)
        print(
            f"one STAT with 100 idle connections open: p50 "
            f"{statistics.median(samples) * 1000:.1f} ms, max {max(samples) * 1000:.1f} ms "
            f"(the original: 9.05 s behind one idle connection)"
        )
        for sock in idle:
            sock.close()
    finally:
        end_child(process, workdir, stop_event)


if __name__ == "__main__":
    main()
