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
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' stand-in server and container, shared

from serverharness import serve_stand_in, serve_web, stand_in_server  # noqa: E402

from anweddol_actors.core.crypto import RSAWrapper  # noqa: E402
from anweddol_actors.engine import admin  # noqa: E402
from anweddol_actors.journal import Journal  # noqa: E402
from anweddol_actors.web import ui  # noqa: E402

FORWARDER_PORTS = (44000, 44099)


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
    database = folder / "journal.sqlite3"
    fill_journal(database, args.journal_rows)
    running = stand_in_server(
        RSAWrapper(key_size=2048),
        folder,
        FORWARDER_PORTS,
        database=str(database),
        max_containers=args.containers + 1,
        max_lifetime=3600,
    ).start()
    engine = running.engine
    web = serve_web(engine, enable_ui=True)
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
                    serve_stand_in(engine)

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
        running.stop()


if __name__ == "__main__":
    main()
