"""STAT over HTTP against STAT over TCP, on loopback, same server process.

Not a test: it prints numbers. The server (TCP and the HTTP front end, one engine, an
RSA-4096 key and a journal file, as deployed) runs in a child process; clients are
threads here. Over TCP each request is its own connection with an RSA-4096 client key
(the deployed client: the baseline); over HTTP each request is a new connection too (the
original's web clients use one ``requests.post`` per call), then with one kept-alive
connection per client.

    .venv/bin/python benchmarks/http_stat_latency.py [--seconds 5]

Prints requests/s, p50 and p99 for 1 and 8 clients on each, and the latency of one STAT
over HTTP while 100 connections trickle their headers (they hold nothing of the engine).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import httpx  # noqa: E402
from benchserver import end_child, sample, start_server, stop_server  # noqa: E402

from anweddol_actors.client import Client  # noqa: E402
from anweddol_actors.protocol.crypto import generate_private_key, private_pem  # noqa: E402


def serve(port_queue, stop_event, pem: bytes, journal_path: str) -> None:
    from anweddol_actors.engine.settings import Settings
    from anweddol_actors.web.app import build_app
    from anweddol_actors.web.server import WebServer
    from anweddol_actors.web.settings import WebSettings

    # No connection caps: this measures throughput, not the limits (a session gives its
    # slot back just after its answer, a fast client may reconnect before).
    settings = Settings(
        database=journal_path,
        libvirt_uri="test:///default",
        max_connections=None,
        max_connections_per_address=None,
    )
    server, thread = start_server(settings, pem=pem)
    web_settings = WebSettings(bind_address="127.0.0.1", port=0)
    web = WebServer(build_app(server.engine, web_settings), web_settings)
    web.start()
    port_queue.put((server.listen_address[1], web.url))
    stop_event.wait()
    web.stop()
    stop_server(server, thread)


def post_once(url: str) -> dict:
    host, port = url.rsplit("/", 1)[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", "/stat", body=b"", headers={"Connection": "close"})
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def run_load(call, concurrency: int, seconds: float, make_state) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    errors: list[BaseException] = []

    def worker() -> None:
        state = make_state()
        mine = []
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                assert call(state)["success"]
            except Exception as exc:  # counted, reported
                errors.append(exc)
                continue
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        print(f"  ({len(errors)} errors, first: {errors[0]!r})")
    return len(latencies) / (time.perf_counter() - started), latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per row")
    args = parser.parse_args()

    server_key, client_key = generate_private_key(4096), generate_private_key(4096)
    workdir = tempfile.mkdtemp(prefix="http-bench-")
    ctx = multiprocessing.get_context("spawn")
    port_queue, stop_event = ctx.Queue(), ctx.Event()
    process = ctx.Process(
        target=serve,
        args=(port_queue, stop_event, private_pem(server_key), f"{workdir}/journal.sqlite3"),
    )
    process.start()
    try:
        port, url = port_queue.get(timeout=120)
        rows = {
            "TCP (baseline)": (
                lambda client: client.stat(),
                lambda: Client("127.0.0.1", port, timeout=30, private_key=client_key),
            ),
            # http.client: a new connection costs the client nothing else (httpx.post
            # would build a TLS context per call, tens of ms of the client's own).
            "HTTP, new connection": (post_once, lambda: url),
            "HTTP, kept alive": (
                lambda session: session.post(url + "/stat").json(),
                lambda: httpx.Client(timeout=30),
            ),
        }
        for call, make_state in rows.values():
            call(make_state())  # warm up
        print(f"{'transport':<22} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
        for name, (call, make_state) in rows.items():
            for concurrency in (1, 8):
                rate, latencies = run_load(call, concurrency, args.seconds, make_state)
                print(
                    f"{name:<22} {concurrency:>7} {rate:>8.1f} "
                    f"{percentile(latencies, 0.5) * 1000:>8.1f} "
                    f"{percentile(latencies, 0.99) * 1000:>8.1f}"
                )
        host, web_port = url.rsplit("/", 1)[1].split(":")
        trickling = []
        for _ in range(100):
            sock = socket.create_connection((host, int(web_port)))
            sock.sendall(b"POST /stat HTTP/1.1\r\nHost: x\r\nX-Slow: a")
            trickling.append(sock)
        time.sleep(0.5)

        def one_stat() -> None:
            assert post_once(url)["success"]

        samples = sample(one_stat)
        print(
            f"one HTTP STAT with 100 trickling connections open: p50 "
            f"{statistics.median(samples) * 1000:.1f} ms, max {max(samples) * 1000:.1f} ms"
        )
        for sock in trickling:
            sock.close()
    finally:
        end_child(process, workdir, stop_event)


if __name__ == "__main__":
    main()
