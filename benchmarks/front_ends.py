"""Several front ends on one PostgreSQL journal: what a DESTROY elsewhere and a shared
CREATE cost, each against a baseline measured in the same run.

Not a test: it prints numbers. Every figure is the wall time of one client request, from
the client opening its connection to the answer read (the protocol's key exchange
included), in milliseconds, the median and the 90th percentile of ``--cycles`` requests:

- DESTROY at the owner (baseline): front end ``one`` created the container and ends it
  itself, the ordinary teardown (forwarder, endpoint shell, domain, each journalled).
- DESTROY at the other: front end ``two`` gets the DESTROY of ``one``'s container: it
  checks and revokes the shared credentials, tells ``one`` (PostgreSQL NOTIFY on its
  channel; ``one`` ends the container the ordinary way) and answers once the journal shows
  the container ended, which it reads 10 ms after the NOTIFY, then at doubling intervals
  up to 100 ms (engine/frontends.py): the ratio
  other ÷ owner is what the client pays for reaching a front end that does not own its
  container.
- CREATE at an unnamed server (baseline): one ``serve`` without ``server.front_end`` on
  its own database of the same PostgreSQL server: its capacity is its own (no claim in
  the journal).
- CREATE at a named front end: ``one``, with ``two`` running on the same journal: the
  host's slot is claimed in the journal (one transaction under an advisory lock, checked
  against the other front ends' slots) and the others' slots are read for placement. The
  ratio named ÷ unnamed is the cost of sharing capacity.

Each cycle runs, in turn: CREATE at ``one`` (a named CREATE) and DESTROY at ``one``;
CREATE at ``one`` (not counted) and DESTROY at ``two``; CREATE (the unnamed CREATE) and
DESTROY at the unnamed server. Between requests the script waits, untimed, until the
server that owned the container holds no slot and no live container in its journal, so
that every request starts from the same state and the machine's drift spreads over all
four figures.

The servers are the seed facade (``ServerInterface``) in this process, on 127.0.0.1:
libvirt's ``test:///default`` (nothing boots; every connection of the process shares its
one driver, as front ends share a real host), one host ``h`` of ``max_containers: 1`` for
all, ``server.front_end.lease`` 3 s (renewed every second), the guest's SSH a loopback SSH
server (tests/guest/loopback_ssh.py). PostgreSQL is this script's own: Debian's binaries
started by tests/pgcluster.py into a temporary folder, listening on 127.0.0.1 only, with
``fsync=on``. Every server, the SSH stand-in and PostgreSQL are stopped and their folders
removed at the end, on an error, on Ctrl-C and on SIGTERM. At the end the script lists
the domains carrying the project's marker on ``test:///default`` and the live containers
of both journals, and exits 1 if any is left.

    .venv/bin/python benchmarks/front_ends.py [--cycles 30] [--json FILE]

``--json FILE`` also writes the figures, with every sample in seconds, the load average
before and after the measurement and what was left behind.

Reading it: a DESTROY at the other front end pays the notification and the owner's whole
teardown, seen through the wait of the front end that got it: that front end reads the
journal 10 ms after its NOTIFY, then at doubling intervals up to 100 ms, so the figure is
the owner's teardown plus up to one interval. Its ratio falls as the teardown grows (a
real guest's domain takes longer to destroy than the test driver's). The CREATE ratio is
the shared claim's round trips to PostgreSQL (the others' slots read, the claim's
transaction) against all else a CREATE does here (a domain defined and started, the
guest's SSH setup, a forwarder, each journalled): near 1. The absolute figures depend on
the machine: compare ratios, and mind the load average printed beside them. The servers'
keys are 2048-bit, the client's 4096-bit (generated once).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from anweddol_actors.bench.stats import percentile, ratio  # noqa: E402
from anweddol_actors.client import Client  # noqa: E402
from anweddol_actors.core.crypto import RSAWrapper  # noqa: E402
from anweddol_actors.engine.settings import HostSettings  # noqa: E402
from anweddol_actors.errors import AnweddolError  # noqa: E402
from anweddol_actors.hypervisor import Hypervisor  # noqa: E402
from anweddol_actors.journal import Journal  # noqa: E402
from anweddol_actors.protocol import crypto  # noqa: E402
from tests import pgcluster  # noqa: E402
from tests.guest.loopback_ssh import LoopbackSSH  # noqa: E402
from tests.serverharness import RunningServer, stand_in_server  # noqa: E402

URI = "test:///default"
HOST = "h"
LEASE = 3.0
SETTLE_TIMEOUT = 30.0  # seconds: a server ends a stand-in container in well under one
CLIENT_TIMEOUT = 30.0

LABELS = {
    "destroy_owner": "DESTROY at the owner front end (baseline)",
    "destroy_other": "DESTROY at the other front end (NOTIFY)",
    "destroy_ratio": "  other ÷ owner",
    "create_unnamed": "CREATE at an unnamed server (baseline)",
    "create_named": "CREATE at a named front end (shared claim)",
    "create_ratio": "  named ÷ unnamed",
}


class BenchFailed(AnweddolError):
    """A request the benchmark needs did not succeed, or a server did not settle."""


def free_range(size: int = 20) -> tuple[int, int]:
    """A range of loopback ports for a server's forwarders, starting at a free one."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        base = probe.getsockname()[1]
    return (base, min(65535, base + size))


def make_server(folder: Path, name: str, url: str, guest_port: int, **overrides) -> RunningServer:
    """A server (not started) on ``url``'s journal, its guests "forwarded" to
    ``guest_port``."""
    where = folder / name
    where.mkdir()
    running = stand_in_server(
        RSAWrapper(key_size=2048),
        where,
        free_range(),
        hosts=(HostSettings(name=HOST, libvirt_uri=URI, max_containers=1),),
        guest_port_range=(guest_port, guest_port),
        ready_timeout=10.0,
        database=url,
        **overrides,
    )
    return running


def settled(running: RunningServer) -> None:
    """Wait (bounded) until ``running`` holds no slot and its journal no live container."""
    engine = running.engine
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not (
        engine.context.available_containers(timeout=10) == 1
        and engine.journal.live_entities(kind="container") == []
    ):
        if time.monotonic() > deadline:
            raise BenchFailed(f"a server did not end its container within {SETTLE_TIMEOUT:g} s")
        time.sleep(0.01)


def told(running: RunningServer, uuid: str) -> None:
    """Check that the owner ended the container because it was told (NOTIFY): had the
    other front end destroyed the domain itself after its grace, the figure would measure
    that fallback instead."""
    reasons = {
        (row["details"] or {}).get("reason")
        for row in running.engine.journal.history(uuid)
        if row["kind"] == "container"
    }
    if "DESTROY received by front end two" not in reasons:
        raise BenchFailed(f"container {uuid} was not ended by its owner on notification")


def timed(what: str, request) -> tuple[float, dict]:
    """Seconds one client request took, and its response (which must be a success)."""
    started = time.perf_counter()
    response = request()
    elapsed = time.perf_counter() - started
    if not response.get("success"):
        raise BenchFailed(f"{what} failed: {response.get('message')} {response.get('reason')}")
    return elapsed, response


def measure(cycles: int, servers: dict[str, RunningServer]) -> dict[str, list[float]]:
    """The four figures' samples, in seconds (see the module's docstring for a cycle)."""
    key = crypto.generate_private_key()  # once: no request pays for the client's key
    clients = {
        name: Client(*running.address, timeout=CLIENT_TIMEOUT, private_key=key)
        for name, running in servers.items()
    }
    for client in clients.values():
        client.stat()  # a first request each, not counted (lazy imports, first connection)
    samples: dict[str, list[float]] = {
        "destroy_owner": [],
        "destroy_other": [],
        "create_unnamed": [],
        "create_named": [],
    }

    def create(at: str) -> tuple[float, str, str]:
        elapsed, response = timed(f"CREATE at {at}", clients[at].create)
        data = response["data"]
        return elapsed, data["container_uuid"], data["client_token"]

    def destroy(at: str, uuid: str, token: str) -> float:
        return timed(f"DESTROY at {at}", lambda: clients[at].destroy(uuid, token))[0]

    for _cycle in range(cycles):
        elapsed, uuid, token = create("one")
        samples["create_named"].append(elapsed)
        samples["destroy_owner"].append(destroy("one", uuid, token))
        settled(servers["one"])

        _elapsed, uuid, token = create("one")
        samples["destroy_other"].append(destroy("two", uuid, token))
        settled(servers["one"])
        told(servers["one"], uuid)

        elapsed, uuid, token = create("unnamed")
        samples["create_unnamed"].append(elapsed)
        destroy("unnamed", uuid, token)
        settled(servers["unnamed"])
    return samples


def figures(samples: dict[str, list[float]]) -> dict[str, Any]:
    def summary(values: list[float]) -> dict[str, Any]:
        return {
            "median": statistics.median(values),
            "p90": percentile(values, 0.9),
            "samples": values,
        }

    result: dict[str, Any] = {name: summary(values) for name, values in samples.items()}
    for name, (numerator, denominator) in {
        "destroy_ratio": ("destroy_other", "destroy_owner"),
        "create_ratio": ("create_named", "create_unnamed"),
    }.items():
        result[name] = {
            figure: ratio(result[numerator][figure], result[denominator][figure])
            for figure in ("median", "p90")
        }
    return result


def render(result: dict[str, Any]) -> str:
    lines = [
        f"Front ends on one PostgreSQL {result['postgresql']} journal: {result['cycles']}"
        f" cycles, {URI}, one host of 1 slot, lease {LEASE:g} s",
        f"load average before / after: {result['load_before']} / {result['load_after']}",
        f"{'client request to answer':48}{'median ms':>11}{'p90 ms':>9}",
    ]
    for name, label in LABELS.items():
        figure = result["figures"][name]
        if name.endswith("_ratio"):
            lines.append(f"{label:48}{figure['median']:>11.2f}{figure['p90']:>9.2f}")
        else:
            lines.append(f"{label:48}{figure['median'] * 1000:>11.1f}{figure['p90'] * 1000:>9.1f}")
    left = result["left"]
    lines.append(
        f"marked domains left on {URI}: {', '.join(left['domains']) or 'none'}; live"
        f" containers left in the journals: {', '.join(left['containers']) or 'none'}"
    )
    return "\n".join(lines)


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def leftovers(watch: Hypervisor, urls: list[str]) -> dict[str, list[str]]:
    """The marked domains still on the shared test driver, the live containers still in
    the journals."""
    containers = []
    for url in urls:
        with Journal(url, create=False) as journal:
            rows = journal.live_entities(kind="container", owner=None)
        containers.extend(row["entity_id"] for row in rows)
    return {"domains": watch.list_marked(), "containers": sorted(containers)}


def run(cycles: int, server: pgcluster.PgServer, folder: Path) -> dict[str, Any]:
    """Start the servers, measure, stop them (on any exit) and look for what is left."""
    shared = server.url(server.create_database("front_ends"))
    alone = server.url(server.create_database("unnamed"))
    # Held across the run: the test driver's state lives while one connection is open,
    # so the domains left by the servers can still be listed after they closed theirs.
    watch = Hypervisor(URI)
    try:
        servers: dict[str, RunningServer] = {}
        with LoopbackSSH() as guest:
            try:
                for name in ("one", "two"):
                    servers[name] = make_server(
                        folder, name, shared, guest.port, front_end=name, front_end_lease=LEASE
                    )
                servers["unnamed"] = make_server(folder, "unnamed", alone, guest.port)
                for running in servers.values():
                    running.start()  # kept in servers first: one that fails is stopped too
                load_before = load_average()
                samples = measure(cycles, servers)
                load_after = load_average()
            finally:
                stop_all(servers)
        left = leftovers(watch, [shared, alone])
    finally:
        watch.close()
    return {
        "cycles": cycles,
        "postgresql": server.version,
        "load_before": load_before,
        "load_after": load_after,
        "figures": figures(samples),
        "left": left,
    }


def stop_all(servers: dict[str, RunningServer]) -> None:
    """Stop every started server and close every made one, each even when another fails
    to."""
    failures = []
    for name, running in servers.items():
        try:
            if running.thread.ident is None:  # made, never started: nothing to stop
                running.server.close()
            else:
                running.stop()
        except BaseException as exc:  # noqa: BLE001 - the others are stopped first
            failures.append(f"{name}: {exc!r}")
    if failures:
        raise BenchFailed("servers not stopped: " + "; ".join(failures))


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that clean up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cycles", type=int, default=30, help="requests of each figure (default 30)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.cycles < 1:
        parser.error("--cycles must be at least 1")
    signal.signal(signal.SIGTERM, _terminate)
    # The servers' readiness probe opens the SSH stand-in's port and closes it without a
    # banner, as it does with a real guest: paramiko logs each as an error with a trace.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    folder = Path(tempfile.mkdtemp(prefix="anweddol-bench-front-ends-"))
    server = None
    try:
        server = pgcluster.start()  # stops what it started itself when it fails
        result = run(args.cycles, server, folder)
        # Removed below; named so that a run can be checked to have left nothing behind.
        result["folders"] = [str(folder), str(server.folder)]
    except (pgcluster.PgUnavailable, BenchFailed) as exc:
        print(f"front_ends: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "front_ends: interrupted; the servers, the journal and the files it started "
            "are removed",
            file=sys.stderr,
        )
        return 130
    finally:
        if server is not None:
            pgcluster.stop(server)
        shutil.rmtree(folder, ignore_errors=True)
    print(render(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result["left"]["domains"] or result["left"]["containers"]:
        print("front_ends: the servers left domains or containers behind", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
