"""STAT throughput and latency on loopback, against the RSA operation rate.

Not a test: it prints numbers. The server runs in a child process (its own GIL) with an
RSA-4096 key, as in production; the clients run as threads here, each with its own
connection per request, exactly as deployed clients do.

    .venv/bin/python benchmarks/stat_latency.py [--seconds 5] [--client-bits 4096] [--sequential N]

Prints, for 1, 8 and 64 concurrent clients: requests/s, p50 and p99 latency; the
server's RSA-4096 OAEP decrypt rate measured in the same run and the ratio of the two
(one STAT costs the server one RSA decrypt, so that rate is the ceiling); and the
latency of one STAT while 100 idle connections are open.

Then, over ``--sequential`` STATs one after the other, with the project's client and with
a deployed-style one (each protocol step its own small ``send()``, Nagle left on): the
p50/p99 latency of each, and the server's CPU per STAT (its process's utime + stime from
/proc, over the STATs, divided by their number) against one RSA-4096 OAEP decryption
timed in this process in the same run.
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
from anweddol_actors.protocol import framing  # noqa: E402
from anweddol_actors.protocol.crypto import (  # noqa: E402
    generate_private_key,
    load_public_key,
    public_pem,
    rsa_oaep_decrypt,
    rsa_oaep_encrypt,
)


def serve(port_queue, stop_event, pem: bytes, client_timeout: float, journal_path: str) -> None:
    from anweddol_actors.engine.settings import Settings

    # A real journal file (WAL, fsync per transition), as a deployed server has.
    # Every client here comes from 127.0.0.1: the per-address cap (16 by default) would
    # refuse most of the 64 clients and the 100 idle connections.
    settings = Settings(
        database=journal_path, libvirt_uri="test:///default", max_connections_per_address=None
    )
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


def process_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) the process ``pid`` has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"server closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def deployed_stat(port: int, key, pem: bytes) -> dict:
    """One STAT as deployed clients send it: a ``sendall`` per step, no TCP_NODELAY."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(framing.encode_key_length(len(pem)))
        recv_exact(sock, 1)
        sock.sendall(pem)
        recv_exact(sock, 1)
        length = int(recv_exact(sock, 8).rstrip(b"="))
        sock.sendall(b"1")
        server_key = load_public_key(recv_exact(sock, length))
        sock.sendall(b"1")
        aes, iv = os.urandom(32), os.urandom(16)
        sock.sendall(rsa_oaep_encrypt(server_key, aes + iv))
        recv_exact(sock, 1)
        rsa_oaep_decrypt(key, recv_exact(sock, key.key_size // 8))
        sock.sendall(b"1")
        next_iv = os.urandom(16)
        frame, body = framing.encrypt_message(aes, iv, {"verb": "STAT", "parameters": {}}, next_iv)
        sock.sendall(frame)
        recv_exact(sock, 1)
        sock.sendall(body)
        length = framing.parse_length_frame(aes, next_iv, recv_exact(sock, 16), 1 << 20)
        sock.sendall(b"1")
        plain, _ = framing.decrypt_body(aes, next_iv, recv_exact(sock, length))
        response, _ = framing.decode_json(plain)
        return response


def sequential(port: int, pid: int, call, runs: int) -> tuple[list[float], float]:
    """Latencies of ``runs`` calls one after the other, and the server's CPU per call."""
    latencies = []
    cpu = process_cpu(pid)
    for _ in range(runs):
        started = time.perf_counter()
        assert call()["success"]
        latencies.append(time.perf_counter() - started)
    return latencies, (process_cpu(pid) - cpu) / runs


def one_decrypt(key, runs: int = 100) -> float:
    """CPU seconds of one RSA OAEP decryption with ``key``."""
    block = rsa_oaep_encrypt(key.public_key(), os.urandom(48))
    started = time.process_time()
    for _ in range(runs):
        rsa_oaep_decrypt(key, block)
    return (time.process_time() - started) / runs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per concurrency level")
    parser.add_argument("--client-bits", type=int, default=4096)
    parser.add_argument("--sequential", type=int, default=200, help="STATs per client kind")
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

        pem = public_pem(client_key)
        decrypt = one_decrypt(server_key)
        print(
            f"{args.sequential} sequential STATs; one RSA-4096 OAEP decrypt:"
            f" {decrypt * 1000:.2f} ms"
        )
        print(
            f"{'client':>10} {'p50 ms':>8} {'p99 ms':>8} {'server CPU/STAT ms':>19}"
            f" {'÷ decrypt':>10}"
        )
        for name, call in (
            ("project", client.stat),
            ("deployed", lambda: deployed_stat(port, client_key, pem)),
        ):
            latencies, cpu = sequential(port, process.pid, call, args.sequential)
            print(
                f"{name:>10} {percentile(latencies, 0.5) * 1000:>8.1f} "
                f"{percentile(latencies, 0.99) * 1000:>8.1f} {cpu * 1000:>19.2f} "
                f"{cpu / decrypt:>10.2f}"
            )
    finally:
        end_child(process, workdir, stop_event)


if __name__ == "__main__":
    main()
