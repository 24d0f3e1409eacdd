"""One benchmark run: the sections in order, into one JSON-ready document.

1. ``journal``, ``forwarder``: no server needed.
2. A ``serve`` child with no pool (``warm_pool_size: 0``): ``stat``, ``idle_connections``,
   then the bare boots, the cold CREATEs and DESTROYs and one live container's cost.
3. A ``serve`` child with ``warm_pool_size: 1``: the warm CREATEs.

A section that fails is recorded under ``errors`` and the run goes on; the servers are
stopped (by PID) and their folders and domains removed whatever happens, Ctrl-C included.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anweddol_actors import __version__
from anweddol_actors.bench import create, forwarder, idle, journal, report, stat
from anweddol_actors.bench.server import BenchError, ServeChild
from anweddol_actors.protocol.crypto import generate_private_key

SCHEMA = 1


@dataclass(frozen=True)
class Plan:
    """How much of each measurement a run does."""

    stat_seconds: float
    stat_levels: tuple[int, ...]
    cpu_stats: int
    bare_runs: int
    cold_runs: dict[str, int]
    warm_runs: dict[str, int]
    forwarder_mib: int
    forwarder_streams: int
    forwarder_repeat: int
    setup_count: int
    journal_seconds: float
    idle_connections: int
    key_bits: int = 4096
    sections: tuple[str, ...] = field(
        default=("journal", "forwarder", "stat", "idle_connections", "cold", "warm")
    )


QUICK = Plan(
    stat_seconds=1.0,
    stat_levels=(1, 8, 64),
    cpu_stats=30,
    bare_runs=1,
    cold_runs={"project": 1},
    warm_runs={"project": 1, "deployed": 1},
    forwarder_mib=64,
    forwarder_streams=4,
    forwarder_repeat=1,
    setup_count=50,
    journal_seconds=0.5,
    idle_connections=100,
)
FULL = Plan(
    stat_seconds=5.0,
    stat_levels=(1, 8, 64),
    cpu_stats=200,
    bare_runs=5,
    cold_runs={"project": 5, "deployed": 2},
    warm_runs={"project": 5, "deployed": 5},
    forwarder_mib=512,
    forwarder_streams=8,
    forwarder_repeat=3,
    setup_count=300,
    journal_seconds=3.0,
    idle_connections=500,
)


def _iso_of(uri: str) -> Path:
    # The dev image, built once if missing: the same image the servers boot.
    from anweddol_actors.image.builder import ensure_image  # loaded only when VMs are measured

    return ensure_image()


def _domain_type(uri: str) -> str:
    """The domain type the servers will use; libvirt's daemons started first if this
    process may (as ``serve`` does)."""
    # Loaded only when VMs are measured.
    from anweddol_actors.hypervisor import Hypervisor, ensure_daemons

    if uri.startswith("qemu:///") and os.geteuid() == 0:
        ensure_daemons(uri)
    with Hypervisor(uri) as hv:
        return hv.detect_domain_type()


def run(
    plan: Plan,
    *,
    quick: bool,
    libvirt_uri: str = "qemu:///system",
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure what ``plan`` says; the document ``report.render`` and ``--json`` show."""
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "version": __version__,
        "quick": quick,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"cores": os.cpu_count(), "python": platform.python_version()},
        "errors": {},
    }
    started = time.monotonic()

    def section(
        name: str, measure: Callable[[], Any], store: Callable[[Any], None], part: str = ""
    ) -> None:
        if name not in plan.sections:
            return
        label = f"{name} ({part})" if part else name
        progress(f"[{time.monotonic() - started:6.1f} s] {label} ...")
        try:
            store(measure())
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # recorded; the other sections still run
            document["errors"][label] = f"{type(exc).__name__}: {exc}"
            progress(f"  {label} failed: {exc}")

    def put(key: str) -> Callable[[Any], None]:
        return lambda value: document.__setitem__(key, value)

    section("journal", lambda: journal.measure(plan.journal_seconds), put("journal"))
    section(
        "forwarder",
        lambda: forwarder.measure(
            size_mib=plan.forwarder_mib,
            streams=plan.forwarder_streams,
            repeat=plan.forwarder_repeat,
            setup_count=plan.setup_count,
        ),
        put("forwarder"),
    )
    if not {"stat", "idle_connections", "cold", "warm"} & set(plan.sections):
        return _finish(document, started)
    server_key = generate_private_key(plan.key_bits)
    client_key = generate_private_key(plan.key_bits)
    document["host"]["domain_type"] = _domain_type(libvirt_uri)
    iso = _iso_of(libvirt_uri) if "cold" in plan.sections else None
    document["create"] = {}
    try:
        if {"stat", "idle_connections", "cold"} & set(plan.sections):
            _measure_cold_server(plan, libvirt_uri, server_key, client_key, iso, document, section)
    except BenchError as exc:  # the server did not start: its sections did not run
        document["errors"]["server"] = f"{type(exc).__name__}: {exc}"
        progress(f"  server without a pool failed: {exc}")
    if "warm" in plan.sections:
        progress(f"[{time.monotonic() - started:6.1f} s] server with a warm pool ...")
        try:
            with ServeChild(
                libvirt_uri=libvirt_uri, warm_pool_size=1, server_key=server_key
            ) as warm:
                section(
                    "warm",
                    lambda: create.measure_warm(warm, client_key, runs=plan.warm_runs),
                    lambda value: document["create"].__setitem__("warm", value),
                )
        except BenchError as exc:
            document["errors"]["warm server"] = f"{type(exc).__name__}: {exc}"
            progress(f"  server with a warm pool failed: {exc}")
    return _finish(document, started)


def _measure_cold_server(
    plan: Plan,
    libvirt_uri: str,
    server_key: Any,
    client_key: Any,
    iso: Path | None,
    document: dict[str, Any],
    section: Callable[..., None],
) -> None:
    """The sections of the server with no pool: STAT, idle connections, cold CREATE."""

    def put(key: str) -> Callable[[Any], None]:
        return lambda value: document.__setitem__(key, value)

    with ServeChild(libvirt_uri=libvirt_uri, warm_pool_size=0, server_key=server_key) as cold:
        section(
            "stat",
            lambda: stat.measure(
                cold.pid,
                cold.port,
                server_key,
                client_key,
                seconds=plan.stat_seconds,
                levels=plan.stat_levels,
                cpu_count=plan.cpu_stats,
            ),
            put("stat"),
        )
        section(
            "idle_connections",
            lambda: idle.measure(
                cold.pid,
                cold.port,
                plan.idle_connections,
                stat.make_client("project", cold.port, client_key).stat,
            ),
            put("idle_connections"),
        )
        section(
            "cold",
            lambda: create.measure_cold(
                cold, client_key, iso, bare_runs=plan.bare_runs, cold_runs=plan.cold_runs
            ),
            document["create"].update,
        )
        section(
            "cold",
            lambda: create.live_container_cost(cold, client_key),
            lambda value: document["create"].__setitem__("live_container", value),
            part="a live container's cost",
        )


def _finish(document: dict[str, Any], started: float) -> dict[str, Any]:
    document["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    document["seconds"] = time.monotonic() - started
    document["ratios"] = report.ratios(document)
    return document
