"""What the operator's page costs the server: one ``GET /ui/api/state`` (what the page asks
every 2 s per open browser) against the baseline of ``containers list`` (engine/admin.py
``list_containers`` alone), with 0 and N live containers, on a journal file that already
holds many requests (the request tally reads only the rows added since its last call).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/ui_state.py [--containers 4] [--runs 200]
        [--journal-rows 100000]

Runs on libvirt's test driver (no VM): stand-in containers as a CREATE leaves them (a
test-driver domain, a real forwarder on a loopback port, journalled steps). Prints the
median and p95 of each, in milliseconds: the page's state built in-process (the server's
work), and over HTTP on loopback with one kept-alive connection (what a browser waits).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

from anweddol_actors.actors.registry import LiveContainer
from anweddol_actors.core.crypto import RSAWrapper
from anweddol_actors.core.server import ServerInterface
from anweddol_actors.engine import admin
from anweddol_actors.engine.entities import start_container, start_forwarder
from anweddol_actors.engine.settings import Settings
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle.events import CONTEXT_NORMAL_PROCESS
from anweddol_actors.web import ui
from anweddol_actors.web.app import build_app
from anweddol_actors.web.server import WebServer
from anweddol_actors.web.settings import WebSettings

FORWARDER_PORTS = (44000, 44099)


def stand_in(engine) -> None:
    context = engine.context
    container_uuid = str(uuid.uuid4())
    assert context.registry.reserve_slot().get()
    container = start_container(context, container_uuid)
    container.create(CONTEXT_NORMAL_PROCESS).get()
    container.start_domain(CONTEXT_NORMAL_PROCESS).get()
    container.mark_administered("user_12345", CONTEXT_NORMAL_PROCESS).get()
    forwarder = start_forwarder(context, container_uuid, ("127.0.0.1", 9), owner="127.0.0.9")
    forwarder.create(CONTEXT_NORMAL_PROCESS).get()
    forwarder.start_forwarding(CONTEXT_NORMAL_PROCESS).get()
    container.mark_serving(forwarder.port.get(), CONTEXT_NORMAL_PROCESS).get()
    assert context.registry.add(LiveContainer(container_uuid, container, forwarder)).get()


def fill_journal(path: Path, rows: int) -> None:
    """Earlier runs' requests: session rows the tally must not read again each time."""
    with Journal(str(path)) as journal:
        batch = []
        for number in range(rows):
            batch.append(
                {
                    "kind": "session",
                    "entity_id": f"old-{number}",
                    "trigger": "request",
                    "source": "started_ready",
                    # Ended (terminal): the server's start reconciles no such session.
                    "dest": "destroyed",
                    "terminal": True,
                    "details": {"verb": "STAT"},
                }
            )
            if len(batch) == 5000:
                journal.record_many(batch)
                batch = []
        if batch:
            journal.record_many(batch)


def timed(call, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--journal-rows", type=int, default=100_000)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="ui-bench-"))
    iso = folder / "stand-in.iso"
    iso.write_bytes(b"\0" * 1024)
    database = folder / "journal.sqlite3"
    fill_journal(database, args.journal_rows)
    settings = Settings(
        database=str(database),
        libvirt_uri="test:///default",
        domain_type="test",
        container_memory=128,
        container_vcpus=1,
        port_range=FORWARDER_PORTS,
        forward_bind_address="127.0.0.1",
        max_containers=args.containers + 1,
        max_lifetime=3600,
        max_idle_time=None,
    )
    server = ServerInterface(
        str(iso),
        "127.0.0.1",
        0,
        3,
        runtime_rsa_wrapper=RSAWrapper(key_size=2048),
        settings=settings,
    )
    thread = threading.Thread(target=server.startServer, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.isRunning():
        if time.monotonic() > deadline:
            raise SystemExit("server did not start")
        time.sleep(0.01)
    engine = server.engine
    web_settings = WebSettings(bind_address="127.0.0.1", port=0, enable_ui=True)
    web = WebServer(build_app(engine, web_settings), web_settings)
    web.start()
    try:
        with httpx.Client(base_url=web.url, timeout=30) as client:
            first = time.perf_counter()
            client.get("/ui/api/state").raise_for_status()
            first_ms = (time.perf_counter() - first) * 1000
            print(
                f"journal rows before the run: {args.journal_rows}; first state: {first_ms:.1f} ms"
            )
            print(f"{'live':>5}  {'what':<38} {'median ms':>9} {'p95 ms':>8}")
            for live in (0, args.containers):
                while engine.registry.count().get() < live:
                    stand_in(engine)

                def baseline():
                    admin.list_containers(engine.context)

                def state():
                    ui.page_state(engine)

                def page():
                    client.get("/ui/api/state").raise_for_status()

                for what, call in (
                    ("containers list (baseline, in-process)", baseline),
                    ("the page's state (in-process)", state),
                    ("GET /ui/api/state (HTTP, loopback)", page),
                ):
                    median, p95 = timed(call, args.runs)
                    print(f"{live:>5}  {what:<38} {median:>9.2f} {p95:>8.2f}")
    finally:
        web.stop()
        server.stopServer()
        thread.join(60)
        server.close()


if __name__ == "__main__":
    main()
