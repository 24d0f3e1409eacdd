"""What the request log line costs: STAT rate with no log, a text log file, a JSON one.

Not a test: it prints numbers. One server runs in a child process (its own GIL) with an
RSA-4096 key and a real journal file, as deployed; between rounds the benchmark tells it
to reconfigure its logging (``anweddol_actors.logs.configure``), so every mode is measured
against the same server, alternating modes round after round to spread the machine's
drift over all of them. Then, in this process, the cost of writing one request line.

    .venv/bin/python benchmarks/request_log_cost.py [--seconds 3] [--rounds 3] [--clients 8]

Baseline: "off" (level WARNING: the engine checks ``isEnabledFor`` and builds no line).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchserver import start_server, stop_server  # noqa: E402

from anweddol_actors.client import Client  # noqa: E402
from anweddol_actors.protocol.crypto import generate_private_key, private_pem  # noqa: E402

MODES = ("off", "text", "json")


def apply(mode: str, folder: str) -> None:
    from anweddol_actors.logs import configure

    if mode == "off":
        configure("WARNING", os.path.join(folder, "off.log"), "text", None)
    else:
        configure("INFO", os.path.join(folder, f"{mode}.log"), mode, None)


def serve(port_queue, commands, done, pem: bytes, folder: str) -> None:
    from anweddol_actors.engine.settings import Settings

    apply("off", folder)
    # No per-address limit: every client of the benchmark comes from 127.0.0.1, and a
    # refused connection would be retried at once, measuring the refusals instead.
    settings = Settings(
        database=os.path.join(folder, "journal.sqlite3"),
        libvirt_uri="test:///default",
        max_connections_per_address=None,
    )
    server, thread = start_server(settings, pem=pem)
    port_queue.put(server.listen_address[1])
    while (mode := commands.get()) is not None:
        apply(mode, folder)
        done.put(mode)
    stop_server(server, thread)


def stat_rate(port: int, clients: int, seconds: float, client_key) -> float:
    count = [0]
    errors: list[BaseException] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        client = Client("127.0.0.1", port, timeout=30, private_key=client_key)
        mine = 0
        while time.perf_counter() < deadline:
            try:
                response = client.stat()
            except Exception as exc:  # counted, reported
                errors.append(exc)
                continue
            assert response["success"]
            mine += 1
        with lock:
            count[0] += mine

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        print(f"  ({len(errors)} failed STATs, not counted; first: {errors[0]!r})")
    return count[0] / (time.perf_counter() - started)


def line_cost(folder: str, mode: str, lines: int = 20000) -> float:
    """Microseconds to write one request line (as the engine does) to a ``mode`` file."""
    from anweddol_actors.logs import configure

    path = os.path.join(folder, f"micro-{mode}.log")
    configure("INFO", path, mode, None)
    log = logging.getLogger("anweddol_actors.requests")
    extra = {
        "connection": "0123456789abcdef0123456789abcdef",
        "client": "127.0.0.1",
        "verb": "STAT",
        "container": None,
        "outcome": "OK",
        "duration_ms": 12.3,
    }
    started = time.perf_counter()
    for _ in range(lines):
        log.info("%s %s in %.1f ms", "STAT", "OK", 12.3, extra=extra)
    return (time.perf_counter() - started) / lines * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each mode")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="log-bench-")
    server_key = generate_private_key(4096)
    client_key = generate_private_key(2048)
    ctx = multiprocessing.get_context("spawn")
    port_queue, commands, done = ctx.Queue(), ctx.Queue(), ctx.Queue()
    process = ctx.Process(
        target=serve, args=(port_queue, commands, done, private_pem(server_key), folder)
    )
    process.start()
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        port = port_queue.get(timeout=60)
        Client("127.0.0.1", port, timeout=30, private_key=client_key).stat()  # warm up
        for _ in range(args.rounds):
            for mode in MODES:
                commands.put(mode)
                assert done.get(timeout=30) == mode
                rates[mode].append(stat_rate(port, args.clients, args.seconds, client_key))
        commands.put(None)
        process.join(timeout=120)
        print(f"STAT, {args.clients} clients, {args.rounds} rounds of {args.seconds:g} s a mode")
        print(f"{'log':>6} {'req/s (median)':>15} {'rounds':>24} {'vs off':>8}")
        base = statistics.median(rates["off"])
        for mode in MODES:
            median = statistics.median(rates[mode])
            each = " ".join(f"{rate:.1f}" for rate in rates[mode])
            print(f"{mode:>6} {median:>15.1f} {each:>24} {median / base - 1:>+8.1%}")
        with open(os.path.join(folder, "json.log")) as stream:
            written = sum(1 for line in stream if "anweddol_actors.requests" in line)
        print(f"request lines in the JSON log: {written}")
        for mode in ("text", "json"):
            print(f"one request line, {mode} file (this process): {line_cost(folder, mode):.1f} µs")
    finally:
        if process.is_alive():
            process.terminate()
            process.join()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
