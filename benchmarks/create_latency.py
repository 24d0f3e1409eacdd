"""CREATE latency against a bare boot of the same image, with a journal-derived breakdown.

Not a test: it prints numbers. In one run, on 127.0.0.1 only:

  (a) bare boot: Hypervisor.create_domain (loopback forward port) -> SSH banner, N runs;
  (b) CREATE through our client against an in-process ServerInterface (RSA-4096 server
      key, RSA-4096 client key), request -> response, N runs, each followed by a timed
      DESTROY;
  (c) CREATE / bare boot, CREATE - bare boot, and where the CREATE's time goes, from the
      journal's transition timestamps (session, container, ``uuid.shell``,
      ``uuid.forwarder``) and the seed events: a transition is journalled *before* its
      step acts (the machine is asked first), an event fires once the step is done, so a
      step runs from its row to its event;
  (d) two CREATEs in parallel: wall time.

    .venv/bin/python benchmarks/create_latency.py [--runs 3] [--time-limit 900]

Every domain started here is destroyed by its UUID (bare boots in a ``finally``; the
server's by DESTROY, by ``stopServer`` and, last, by UUID). ``--time-limit`` bounds the
whole run: past it, the run is interrupted and cleaned up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from anweddol_actors.client import Client  # noqa: E402
from anweddol_actors.core.crypto import RSAWrapper  # noqa: E402
from anweddol_actors.core.server import ServerInterface  # noqa: E402
from anweddol_actors.engine.settings import Settings  # noqa: E402
from anweddol_actors.hypervisor import (  # noqa: E402
    DomainSpec,
    Hypervisor,
    ensure_daemons,
    wait_for_ssh_banner,
)
from anweddol_actors.image.builder import ensure_image  # noqa: E402
from anweddol_actors.protocol.crypto import generate_private_key  # noqa: E402

URI = "qemu:///system"
LOOPBACK = "127.0.0.1"
# Loopback ports away from the e2e tests' (41000-42999) and boot_latency.py's (20000-29999).
BARE_GUEST_PORTS = range(43000, 44000)
SERVER_GUEST_PORTS = (44000, 44999)
FORWARDER_PORTS = (45000, 45999)
KEY_BITS = 4096
MEMORY_MIB = 256
VCPUS = 1


class TimeLimit(Exception):
    pass


def _on_alarm(_signum, _frame) -> None:
    raise TimeLimit("time limit reached")


def stats(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):6.2f}s  min {min(values):6.2f}s  "
        f"max {max(values):6.2f}s"
    )


def epoch(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time).timestamp()


# -- (a) bare boot -------------------------------------------------------------------------


def bare_boot(hv: Hypervisor, iso: Path, started: list[str]) -> float:
    spec = DomainSpec(
        uuid=str(uuid.uuid4()),
        memory_mib=MEMORY_MIB,
        vcpus=VCPUS,
        iso_path=iso,
        domain_type=hv.detect_domain_type(),
        network="user",
        forward_port=BARE_GUEST_PORTS.start,
    )
    started.append(spec.uuid)  # before create: a create that half-succeeds is cleaned too
    try:
        t0 = time.monotonic()
        handle = hv.create_domain_on_free_port(spec, BARE_GUEST_PORTS)
        wait_for_ssh_banner(LOOPBACK, handle.spec.forward_port, deadline=t0 + 120)
        return time.monotonic() - t0
    finally:
        hv.destroy_domain(spec.uuid)


# -- (b), (c) CREATE through the server ------------------------------------------------------

# (label, what ends the step); each step runs from the previous mark to this one. Rows mark
# where a step begins (journalled before it acts), events where it is done.
STEPS = [
    ("connect + accept", "session.start"),
    ("RSA key exchange", "session.handshake"),
    ("request received + decrypted", "session.request"),
    ("container created (journal)", "container.start"),
    ("domain create (createXML)", "event.on_container_domain_started"),
    ("wait for SSH banner (boot)", "event.on_endpoint_shell_created"),
    ("endpoint SSH login", "event.on_endpoint_shell_opened"),
    ("setup script (new user)", "container.administer"),
    ("endpoint shell close", "event.on_endpoint_shell_closed"),
    ("forwarder reserve + start", "event.on_forwarder_started"),
    ("store credentials + serve", "container.serve"),
    ("response (ISO sha256, encrypt, send)", "client.response"),
]
# The events whose times mark the end of a step.
TIMED_EVENTS = tuple(mark.split(".", 1)[1] for _, mark in STEPS if mark.startswith("event."))


def marks_of(server: ServerInterface, t0: float, t1: float, container_uuid: str, events) -> dict:
    """Absolute (epoch) time of each mark of one CREATE, from the journal and the events."""
    journal = server.engine.journal
    marks: dict[str, float] = {"client.request": t0, "client.response": t1}
    sessions = [
        row
        for row in journal.history(kind="session")
        if t0 - 0.5 <= epoch(row["time"]) <= t1 and row["trigger"] == "request"
        if (row.get("details") or {}).get("verb") == "CREATE"
    ]
    if len(sessions) == 1:  # only meaningful when one CREATE was in flight
        for row in journal.history(entity_id=sessions[0]["entity_id"]):
            marks.setdefault(f"session.{row['trigger']}", epoch(row["time"]))
    for entity, prefix in (
        (container_uuid, "container"),
        (f"{container_uuid}.shell", "shell"),
        (f"{container_uuid}.forwarder", "forwarder"),
    ):
        for row in journal.history(entity_id=entity):
            marks.setdefault(f"{prefix}.{row['trigger']}", epoch(row["time"]))
    for event, times in events.items():
        seen = [at for at in times if t0 <= at <= t1]
        if len(seen) == 1:  # only meaningful when one CREATE was in flight
            marks[f"event.{event}"] = seen[0]
    return marks


def breakdown(marks: dict) -> list[tuple[str, float | None]]:
    out, previous = [], marks["client.request"]
    for label, mark in STEPS:
        at = marks.get(mark)
        if at is None:
            out.append((label, None))
            continue
        out.append((label, at - previous))
        previous = at
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=900, help="seconds, whole run")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(int(args.time_limit))
    started_domains: list[str] = []
    hv: Hypervisor | None = None
    server: ServerInterface | None = None
    server_thread: threading.Thread | None = None
    workdir: Path | None = None
    try:
        ensure_daemons(URI)
        t = time.monotonic()
        iso = ensure_image()
        print(
            f"image: {iso} ({iso.stat().st_size / 1e6:.1f} MB, ready in "
            f"{time.monotonic() - t:.1f}s)"
        )
        hv = Hypervisor(URI)
        domain_type = hv.detect_domain_type()
        print(
            f"domain type: {domain_type}, {MEMORY_MIB} MiB, {VCPUS} vCPU, "
            f"{os.cpu_count()} host cores; runs: {args.runs}"
        )

        # (a)
        print("\n(a) bare boot: create_domain -> SSH banner")
        boots = []
        for i in range(args.runs):
            boots.append(bare_boot(hv, iso, started_domains))
            print(f"  run {i + 1}: {boots[-1]:.2f}s")
        print(f"  {stats(boots)}")

        # (b)
        t = time.monotonic()
        wrapper = RSAWrapper(key_size=KEY_BITS)
        client_key = generate_private_key(KEY_BITS)
        keys_time = time.monotonic() - t
        workdir = Path(tempfile.mkdtemp(prefix="anweddol-create-latency-"))
        settings = Settings(
            iso_path=str(iso),
            database=str(workdir / "journal.sqlite3"),
            libvirt_uri=URI,
            network_mode="user",
            domain_type=domain_type,
            container_memory=MEMORY_MIB,
            container_vcpus=VCPUS,
            port_range=FORWARDER_PORTS,
            forward_bind_address=LOOPBACK,
            guest_port_range=SERVER_GUEST_PORTS,
            ready_timeout=120,
        )
        server = ServerInterface(
            str(iso), LOOPBACK, 0, 60, runtime_rsa_wrapper=wrapper, settings=settings
        )
        event_times: dict[str, list[float]] = {event: [] for event in TIMED_EVENTS}
        for event in TIMED_EVENTS:

            def _seen(context, data, _times=event_times[event]):  # the step just finished
                _times.append(time.time())

            server.setEventHandler(event, _seen)

        server_thread = threading.Thread(target=server.startServer, daemon=True)
        server_thread.start()
        deadline = time.monotonic() + 30
        while not server.isRunning():
            if time.monotonic() > deadline or not server_thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        port = server.listen_address[1]
        client = Client(LOOPBACK, port, timeout=240, private_key=client_key)
        client.stat()  # warm up: libvirt connection is opened lazily on first CREATE anyway
        print(
            f"\n(b) CREATE / DESTROY via client -> in-process server {LOOPBACK}:{port} "
            f"(RSA-{KEY_BITS} server key and client key; keys made in {keys_time:.1f}s)"
        )

        def create_once() -> tuple[float, float, float, dict]:
            t0_wall, t0 = time.time(), time.monotonic()
            response = client.create()
            elapsed = time.monotonic() - t0
            t1_wall = t0_wall + elapsed
            if not response["success"]:
                raise RuntimeError(f"CREATE failed: {response}")
            started_domains.append(response["data"]["container_uuid"])
            return elapsed, t0_wall, t1_wall, response["data"]

        destroy_marks: list[dict[str, float]] = []

        def destroy_once(data: dict) -> float:
            t0_wall, t0 = time.time(), time.monotonic()
            response = client.destroy(data["container_uuid"], data["client_token"])
            elapsed = time.monotonic() - t0
            if not response["success"]:
                raise RuntimeError(f"DESTROY failed: {response}")
            # Offsets from the request of the teardown rows (journal timestamps).
            journal, offsets = server.engine.journal, {}
            for entity, prefix in (
                (f"{data['container_uuid']}.forwarder", "forwarder"),
                (data["container_uuid"], "container"),
            ):
                for row in journal.history(entity_id=entity):
                    if row["trigger"] in ("stop", "destroy"):
                        offsets[f"{prefix} {row['trigger']}"] = epoch(row["time"]) - t0_wall
            destroy_marks.append(offsets)
            return elapsed

        creates, destroys, breakdowns = [], [], []
        for i in range(args.runs):
            elapsed, t0_wall, t1_wall, data = create_once()
            try:
                marks = marks_of(server, t0_wall, t1_wall, data["container_uuid"], event_times)
                breakdowns.append(breakdown(marks))
            finally:
                destroys.append(destroy_once(data))
            creates.append(elapsed)
            print(f"  run {i + 1}: CREATE {creates[-1]:.2f}s, DESTROY {destroys[-1]:.2f}s")
        print(f"  CREATE  {stats(creates)}")
        print(f"  DESTROY {stats(destroys)}")
        print("  DESTROY journal rows, seconds after the request (median of runs):")
        for name in destroy_marks[0] if destroy_marks else ():
            values = [m[name] for m in destroy_marks if name in m]
            print(f"    {name:<20} {statistics.median(values):6.3f}s")

        # (c)
        boot, create = statistics.median(boots), statistics.median(creates)
        print("\n(c) CREATE vs bare boot (medians)")
        print(f"  ratio CREATE / boot: {create / boot:.2f}x")
        print(f"  overhead CREATE - boot: {create - boot:+.2f}s")
        print("  where a CREATE's time goes (journal timestamps; per-step median, then runs):")
        for index, (label, _mark) in enumerate(STEPS):
            values = [b[index][1] for b in breakdowns]
            known = [v for v in values if v is not None]
            median = f"{statistics.median(known):7.3f}s" if known else "      ?"
            runs = " ".join("    ?" if v is None else f"{v:5.3f}" for v in values)
            print(f"    {label:<38} {median}   [{runs}]")
        in_create_boot = [
            sum(v for label, v in b if label.startswith(("domain create", "wait for SSH")) and v)
            for b in breakdowns
        ]
        print(
            f"  boot inside CREATE (createXML + banner wait): median "
            f"{statistics.median(in_create_boot):.2f}s vs bare {boot:.2f}s"
        )

        # (d)
        print("\n(d) two CREATEs in parallel")
        results: list[tuple[float, dict] | BaseException] = []
        lock = threading.Lock()

        def parallel_create() -> None:
            try:
                t0 = time.monotonic()
                response = Client(LOOPBACK, port, timeout=240, private_key=client_key).create()
                elapsed = time.monotonic() - t0
                if response["success"]:
                    with lock:
                        started_domains.append(response["data"]["container_uuid"])
                outcome: tuple[float, dict] | BaseException = (elapsed, response)
            except BaseException as exc:  # reported below
                outcome = exc
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=parallel_create, daemon=True) for _ in range(2)]
        t0 = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        wall = time.monotonic() - t0
        each = []
        for outcome in results:
            if isinstance(outcome, BaseException):
                print(f"  a CREATE raised: {outcome!r}")
                continue
            elapsed, response = outcome
            if not response["success"]:
                print(f"  a CREATE failed: {response}")
                continue
            each.append(elapsed)
            destroy_once(response["data"])
        print(
            f"  wall time for both: {wall:.2f}s; each: "
            + ", ".join(f"{e:.2f}s" for e in sorted(each))
            + f"; vs one CREATE alone (median) {create:.2f}s -> {wall / create:.2f}x"
        )
        return 0 if len(each) == 2 else 1
    finally:
        signal.alarm(0)
        if server is not None:
            server.stopServer()  # stops every container it still has
            if server_thread is not None:
                server_thread.join(timeout=120)
            server.close()
        if hv is not None:
            for domain_uuid in started_domains:
                try:
                    hv.destroy_domain(domain_uuid)
                except Exception as exc:  # report, keep cleaning
                    print(f"  cleanup of {domain_uuid} failed: {exc}", file=sys.stderr)
            hv.close()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
