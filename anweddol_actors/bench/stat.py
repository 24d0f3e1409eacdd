"""STAT under load, with the project's client and a deployed-style client, against the
RSA-4096 decrypt rate; and the server's CPU time per STAT against one decryption.

One STAT costs the server one RSA-OAEP decryption of the client's session key (the
protocol's one expensive step): the decrypt rate measured here, in this process, on the
server's key, is the ceiling of STAT/s, and one decryption's time is the floor of the
server's CPU per STAT. The clients run as threads of this process, each opening one
connection per request, as deployed clients do.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from anweddol_actors.bench.deployed_client import DeployedClient
from anweddol_actors.bench.server import LOOPBACK, BenchError, cpu_seconds
from anweddol_actors.bench.stats import ratio, summary
from anweddol_actors.client import Client
from anweddol_actors.protocol.crypto import rsa_oaep_decrypt, rsa_oaep_encrypt

CLIENT_KINDS = ("project", "deployed")


def make_client(kind: str, port: int, key: Any, timeout: float = 60.0) -> Any:
    """A client of ``kind`` (``project``: anweddol_actors.client; ``deployed``: the
    deployed-style one) for the server on 127.0.0.1:``port``."""
    if kind == "project":
        return Client(LOOPBACK, port, timeout=timeout, private_key=key)
    if kind == "deployed":
        return DeployedClient(LOOPBACK, port, key, timeout=timeout)
    raise ValueError(f"unknown client kind {kind!r}")


def decrypt_rate(key: Any, seconds: float) -> dict[str, float]:
    """RSA-OAEP decryptions of a 48-byte secret (the session key) with ``key`` for about
    ``seconds``: ``per_second`` and ``seconds_each``."""
    block = rsa_oaep_encrypt(key.public_key(), os.urandom(48))
    rsa_oaep_decrypt(key, block)  # warm up
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        rsa_oaep_decrypt(key, block)
        count += 1
    elapsed = time.perf_counter() - started
    return {"per_second": count / elapsed, "seconds_each": elapsed / count}


def run_load(
    request: Callable[[], dict[str, Any]], concurrency: int, seconds: float
) -> dict[str, Any]:
    """``concurrency`` threads each calling ``request`` back to back for ``seconds``:
    requests/s, the latency summary, the raw samples (seconds) and the error count."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        mine = []
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                response = request()
                if not response.get("success"):
                    raise BenchError(f"STAT refused: {response.get('message')}")
            except Exception as exc:  # counted and reported, the load goes on
                with lock:
                    errors.append(repr(exc))
                continue
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        # Each request is bounded by the client's timeout: the whole by that past the end.
        thread.join(timeout=seconds + 120)
    elapsed = time.perf_counter() - started
    return {
        "clients": concurrency,
        "requests": len(latencies),
        "per_second": len(latencies) / elapsed,
        "latency": summary(latencies),
        "samples": latencies,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def server_cpu_per_stat(
    pid: int, request: Callable[[], dict[str, Any]], count: int
) -> dict[str, float]:
    """The server process's CPU time (user + system, /proc) over ``count`` sequential
    STATs, divided by ``count``."""
    request()  # warm up
    before = cpu_seconds(pid)
    for _ in range(count):
        request()
    after = cpu_seconds(pid)
    return {"count": count, "seconds_each": (after - before) / count}


def measure(
    pid: int,
    port: int,
    server_key: Any,
    client_key: Any,
    *,
    seconds: float,
    levels: tuple[int, ...],
    cpu_count: int,
) -> dict[str, Any]:
    """The ``stat`` section of the report."""
    decrypt = decrypt_rate(server_key, min(seconds, 2.0))
    loads: dict[str, list[dict[str, Any]]] = {}
    for kind in CLIENT_KINDS:
        client = make_client(kind, port, client_key)
        client.stat()  # warm up: first connection, first journal write
        loads[kind] = []
        for concurrency in levels:
            load = run_load(client.stat, concurrency, seconds)
            load["vs_decrypt_rate"] = ratio(load["per_second"], decrypt["per_second"])
            loads[kind].append(load)
    cpu = server_cpu_per_stat(pid, make_client("project", port, client_key).stat, cpu_count)
    cpu["vs_decrypt"] = ratio(cpu["seconds_each"], decrypt["seconds_each"])
    return {"rsa_decrypt": decrypt, "loads": loads, "server_cpu": cpu}
