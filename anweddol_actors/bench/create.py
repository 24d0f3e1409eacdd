"""CREATE warm (a pooled container handed over) and cold (a boot per CREATE), against a
bare boot of the same image; DESTROY; and what a live container costs.

- Bare boot: the hypervisor layer's own ``create_domain_on_free_port`` (transient domain,
  ``user`` networking, loopback forward port) until the guest's SSH banner: the floor of
  a cold CREATE, which also logs in, creates the client's user and starts a forwarder.
- CREATE phases: each container's journalled transitions (container, ``uuid.shell``,
  ``uuid.forwarder``) as offsets from the client's request; a transition is journalled
  before its step acts, so a phase runs from one row to the next.
- Warm: a server with ``warm_pool_size: 1``; before each CREATE the admin ``status``'s
  ``warm_pool`` is polled until ``ready >= 1`` (bounded). A server without that key has no
  pool: warm is reported as not available.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from anweddol_actors.bench.server import (
    LOOPBACK,
    BenchError,
    ServeChild,
    find_qemu_pid,
    proc_status,
    settled_status,
)
from anweddol_actors.bench.stat import make_client
from anweddol_actors.bench.stats import summary
from anweddol_actors.hypervisor import DomainSpec, Hypervisor, wait_for_ssh_banner

# Loopback forward ports of the bare boots, away from the servers' guest ports (30000-39999)
# and the e2e tests' (41000-42999).
BARE_PORTS = range(47000, 48000)
BOOT_BOUND = 180.0  # seconds for one guest to answer, emulated, on a busy machine
POOL_BOUND = 240.0  # seconds for the warm pool to have a container ready


def epoch(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time).timestamp()


def bare_boot(uri: str, iso: Path, memory_mib: int = 256, vcpus: int = 1) -> dict[str, Any]:
    """One bare boot: ``total`` seconds and its ``phases`` (domain create, SSH banner)."""
    with Hypervisor(uri) as hv:
        spec = DomainSpec(
            uuid=str(uuid.uuid4()),
            memory_mib=memory_mib,
            vcpus=vcpus,
            iso_path=iso,
            domain_type=hv.detect_domain_type(),
            network="user",
            forward_port=BARE_PORTS.start,
        )
        try:
            t0 = time.monotonic()
            handle = hv.create_domain_on_free_port(spec, BARE_PORTS)
            created = time.monotonic() - t0
            wait_for_ssh_banner(LOOPBACK, handle.spec.forward_port, deadline=t0 + BOOT_BOUND)
            total = time.monotonic() - t0
        finally:
            # Before create returns too: a create that half-succeeded is cleaned as well.
            hv.destroy_domain(spec.uuid)
    return {
        "total": total,
        "phases": [["domain create", created], ["SSH banner (boot)", total - created]],
    }


def phases_of(history: list[dict[str, Any]], container: str, t0: float, t1: float) -> list:
    """``[label, seconds]`` from the request (``t0``, epoch) through the container's
    journalled transitions within ``[t0, t1]`` to the response (``t1``)."""
    names = {container: "container", f"{container}.shell": "shell"}
    names[f"{container}.forwarder"] = "forwarder"
    marks = sorted(
        (epoch(row["time"]), f"{names[row['entity_id']]} {row['trigger']}")
        for row in history
        if row["entity_id"] in names and t0 <= epoch(row["time"]) <= t1
    )
    phases, previous, label = [], t0, "request (key exchange, request)"
    for at, name in marks:
        phases.append([label, at - previous])
        previous, label = at, name
    phases.append([label + " → response", t1 - previous])
    return phases


def one_create(server: ServeChild, kind: str, key: Any) -> dict[str, Any]:
    """One CREATE and its DESTROY through a client of ``kind``: seconds and phases."""
    client = make_client(kind, server.port, key, timeout=BOOT_BOUND)
    t0_wall, t0 = time.time(), time.perf_counter()
    response = client.create()
    elapsed = time.perf_counter() - t0
    if not response.get("success"):
        raise BenchError(f"CREATE failed: {response.get('message')}")
    data = response["data"]
    server.container_uuids.append(data["container_uuid"])
    phases = phases_of(server.history(), data["container_uuid"], t0_wall, t0_wall + elapsed)
    d0 = time.perf_counter()
    answer = client.destroy(data["container_uuid"], data["client_token"])
    destroy = time.perf_counter() - d0
    if not answer.get("success"):
        raise BenchError(f"DESTROY failed: {answer.get('message')}")
    return {"client": kind, "create": elapsed, "destroy": destroy, "phases": phases}


def warm_pool(server: ServeChild) -> dict[str, int] | None:
    """The admin status's ``warm_pool`` (``size``, ``ready``, ``filling``), or None when
    the server has no pool to report."""
    pool = server.status().get("warm_pool")
    return pool if isinstance(pool, dict) else None


def wait_pool_ready(server: ServeChild, bound: float = POOL_BOUND) -> float:
    """Seconds until the pool has a container ready (BenchError past ``bound``)."""
    started = time.monotonic()
    while True:
        pool = warm_pool(server)
        if pool is None:
            raise BenchError("the server reports no warm pool")
        if int(pool.get("ready", 0)) >= 1:
            return time.monotonic() - started
        if time.monotonic() - started > bound:
            raise BenchError(f"the warm pool had nothing ready in {bound:g} s ({pool})")
        time.sleep(0.1)


def live_container_cost(server: ServeChild, key: Any) -> dict[str, Any]:
    """Server threads and RSS before and with one live container, and its QEMU's RSS."""
    before = settled_status(server.pid)
    client = make_client("project", server.port, key, timeout=BOOT_BOUND)
    response = client.create()
    if not response.get("success"):
        raise BenchError(f"CREATE failed: {response.get('message')}")
    data = response["data"]
    server.container_uuids.append(data["container_uuid"])
    try:
        with_one = settled_status(server.pid)
        qemu_pid = find_qemu_pid(data["container_uuid"])
        qemu = proc_status(qemu_pid) if qemu_pid else None
    finally:
        client.destroy(data["container_uuid"], data["client_token"])
    return {
        "server_before": before,
        "server_with_one": with_one,
        "server_threads_per_container": with_one["threads"] - before["threads"],
        "server_rss_kib_per_container": with_one["rss_kib"] - before["rss_kib"],
        "qemu_rss_kib": None if qemu is None else qemu["rss_kib"],
        "qemu_threads": None if qemu is None else qemu["threads"],
    }


def measure_cold(
    server: ServeChild, key: Any, iso: Path | None, *, bare_runs: int, cold_runs: dict[str, int]
) -> dict[str, Any]:
    """Bare boots and cold CREATEs (``cold_runs``: client kind → count), interleaved, on
    ``server`` (a server with no pool)."""
    if iso is None:
        raise BenchError("no image to boot")
    kinds = [kind for kind, n in cold_runs.items() for _ in range(n)]
    bare: list[dict[str, Any]] = []
    cold: list[dict[str, Any]] = []
    # Interleaved, a bare boot then a CREATE: on a shared machine the load drifts during a
    # run, and the ratio of the two must not measure the drift.
    for index in range(max(bare_runs, len(kinds))):
        if index < bare_runs:
            bare.append(bare_boot(server.libvirt_uri, iso))
        if index < len(kinds):
            cold.append(one_create(server, kinds[index], key))
    return {
        "bare_boot": {"summary": summary([b["total"] for b in bare]), "runs": bare},
        "cold": {"summary": summary([c["create"] for c in cold]), "runs": cold},
        "destroy": {"summary": summary([c["destroy"] for c in cold])},
    }


def measure_warm(server: ServeChild, key: Any, *, runs: dict[str, int]) -> dict[str, Any]:
    """Warm CREATEs (``runs``: client kind → count) on ``server`` (pool size 1), each
    once the pool has a container ready; ``available: False`` without a pool."""
    try:
        pool = warm_pool(server)
    except BenchError:
        pool = None
    if pool is None:
        return {"available": False, "reason": "the server's status has no warm_pool"}
    if int(pool.get("size", 0)) < 1:
        return {"available": False, "reason": f"the server's warm pool has no room ({pool})"}
    fills, out = [], []
    for kind, count in runs.items():
        for _ in range(count):
            fills.append(wait_pool_ready(server))
            out.append(one_create(server, kind, key))
    by_kind = {kind: summary([r["create"] for r in out if r["client"] == kind]) for kind in runs}
    return {
        "available": True,
        "summary": summary([r["create"] for r in out]),
        "by_client": by_kind,
        "pool_refill_wait": summary(fills),
        "runs": out,
    }
