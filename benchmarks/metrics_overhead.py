"""What the metrics cost a request: server CPU per STAT with metrics vs a no-op stand-in.

Not a test: it prints numbers. Two servers run in child processes (each its own GIL),
with an RSA-4096 key and a real journal file, as deployed, and the request log off: one
counts with ``metrics.Metrics`` (what every server does), the baseline with
``metrics.NoMetrics`` (the same calls, doing nothing). Each round sends the same number
of STATs to each, alternating, and reads the server process's CPU time
(``time.process_time``, all its threads) before and after. Then, in this process, the
cost of the hot-path calls one STAT makes and of one scrape.

    .venv/bin/python benchmarks/metrics_overhead.py [--requests 200] [--rounds 5] [--clients 4]

Baseline: "noop" (``NoMetrics``), run in the same script.
"""

from __future__ import annotations

import argparse
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

MODES = ("noop", "metrics")

# The rows one STAT journals (a session from start to destroy).
STAT_ROWS = [
    {"kind": "session", "trigger": trigger}
    for trigger in ("start", "handshake", "request", "close", "destroy")
]


def serve(mode: str, port_queue, commands, answers, pem: bytes, folder: str) -> None:
    from anweddol_actors.engine.settings import Settings
    from anweddol_actors.logs import configure
    from anweddol_actors.metrics import NoMetrics

    configure("WARNING", os.path.join(folder, f"{mode}.log"), "text", None)
    settings = Settings(
        database=os.path.join(folder, f"{mode}.sqlite3"),
        libvirt_uri="test:///default",
        max_connections_per_address=None,
    )

    def no_metrics(server) -> None:
        server.engine.context.use_metrics(NoMetrics())

    server, thread = start_server(settings, pem=pem, prepare=no_metrics if mode == "noop" else None)
    port_queue.put(server.listen_address[1])
    while commands.get() is not None:
        answers.put(time.process_time())
    stop_server(server, thread)


def send_stats(port: int, clients: int, count: int, client_key) -> None:
    left = [count]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        client = Client("127.0.0.1", port, timeout=30, private_key=client_key)
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            try:
                assert client.stat()["success"]
            except Exception as exc:  # reported: a failed STAT would skew the CPU per request
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"{len(errors)} STATs failed; first: {errors[0]!r}")


def micro(calls: int = 200_000) -> None:
    from anweddol_actors.metrics import Metrics, NoMetrics

    verbs = {"STAT": None, "CREATE": None, "DESTROY": None}
    print(f"hot-path calls of one STAT, this process ({calls} calls each):")
    costs = {}
    for name, metrics in (("noop", NoMetrics()), ("metrics", Metrics())):
        metrics.watch(verbs=verbs)
        started = time.perf_counter()
        for _ in range(calls):
            metrics.request("STAT", "OK", 0.012, "tcp")
            metrics.transitions_recorded(STAT_ROWS)
        costs[name] = (time.perf_counter() - started) / calls * 1e6
        print(f"  {name:>8}: {costs[name]:.2f} µs per STAT (request + 5 transitions)")
    print(f"  metrics cost: {costs['metrics'] - costs['noop']:.2f} µs per STAT")
    metrics = Metrics()
    metrics.watch(verbs=verbs, containers=lambda: {}, available=lambda: 6, uptime=lambda: 1.0)
    metrics.request("STAT", "OK", 0.012, "tcp")
    scrapes = 2000
    started = time.perf_counter()
    for _ in range(scrapes):
        text = metrics.render()
    each = (time.perf_counter() - started) / scrapes * 1e3
    print(f"one scrape's text ({len(text)} bytes, no journal read): {each:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="STATs per round and mode")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="metrics-bench-")
    pem = private_pem(generate_private_key(4096))
    client_key = generate_private_key(2048)
    ctx = multiprocessing.get_context("spawn")
    servers = {}
    try:
        for mode in MODES:
            port_queue, commands, answers = ctx.Queue(), ctx.Queue(), ctx.Queue()
            process = ctx.Process(
                target=serve, args=(mode, port_queue, commands, answers, pem, folder)
            )
            process.start()
            servers[mode] = (process, port_queue.get(timeout=120), commands, answers)
        for _process, port, _commands, _answers in servers.values():
            send_stats(port, args.clients, 20, client_key)  # warm up
        cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                _process, port, commands, answers = servers[mode]
                commands.put("cpu")
                before = answers.get(timeout=30)
                send_stats(port, args.clients, args.requests, client_key)
                commands.put("cpu")
                after = answers.get(timeout=30)
                cpu[mode].append((after - before) / args.requests * 1e3)
        print(
            f"server CPU per STAT, {args.clients} clients, {args.rounds} rounds of "
            f"{args.requests} STATs a mode (RSA-4096 server key, journal file, log off)"
        )
        print(f"{'mode':>8} {'ms/STAT (median)':>17} {'rounds':>36} {'vs noop':>8}")
        base = statistics.median(cpu["noop"])
        for mode in MODES:
            median = statistics.median(cpu[mode])
            each = " ".join(f"{ms:.3f}" for ms in cpu[mode])
            print(f"{mode:>8} {median:>17.3f} {each:>36} {median / base - 1:>+8.1%}")
        micro()
    finally:
        for process, _port, commands, _answers in servers.values():
            commands.put(None)
            process.join(timeout=60)
            if process.is_alive():
                process.terminate()
                process.join()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
