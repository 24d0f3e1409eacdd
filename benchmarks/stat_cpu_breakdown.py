"""Where a STAT's server CPU goes: each phase of a session, in CPU time of its thread.

Not a test: it prints numbers. `python -m anweddol_actors bench` gives the server's CPU
per STAT against one RSA-4096 decryption; this script splits that CPU into the session's
phases. It starts the server in a child process (libvirt's test driver, an RSA-4096 key,
a journal file, as `bench` does) whose session methods are wrapped to add up
``time.thread_time()`` (the calling thread's CPU, so the other threads' work does not
count); the client sends sequential STATs from this process; then the child writes its
table. The process's whole CPU per STAT (``/proc``) is printed beside it: what the
session threads do not explain is the listener's accept and the threads' start and end.

    .venv/bin/python benchmarks/stat_cpu_breakdown.py [--requests 300]

Baseline: the RSA-4096 OAEP decryption, timed by the same wrapper inside the server.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from anweddol_actors.bench.server import ServeChild, child_env, cpu_seconds  # noqa: E402
from anweddol_actors.bench.stat import make_client  # noqa: E402
from anweddol_actors.protocol.crypto import generate_private_key  # noqa: E402

# (module, class or None, attribute, label): what the server child wraps, in table order.
PHASES = (
    ("anweddol_actors.engine.session", "Session", "serve_socket", "whole session"),
    ("anweddol_actors.transport.channel", "ClientChannel", "exchange_keys", "key exchange"),
    ("anweddol_actors.protocol.crypto", None, "rsa_oaep_decrypt", "  of it RSA decrypt"),
    ("anweddol_actors.transport.channel", "ClientChannel", "receive_request", "read request"),
    ("anweddol_actors.engine.session", "Session", "_handle_request", "handle request"),
    ("anweddol_actors.transport.channel", "ClientChannel", "send_response", "  send response"),
    ("anweddol_actors.engine.session", "Session", "_log_request", "  request log line"),
    ("anweddol_actors.lifecycle.machine", "Lifecycle", "fire", "transitions (all)"),
    ("anweddol_actors.journal.store", "Journal", "record_many", "  journal commits"),
)


def serve_instrumented(config: str, out: str) -> int:
    """The server child: wrap the phases, run ``serve``, write the table on SIGUSR1."""
    # The child only: the driver never imports the server's modules by name.
    import importlib

    totals: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def wrapped(function, label):
        def measure(*args, **kwargs):
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                with lock:
                    totals[label] += spent
                    calls[label] += 1

        return measure

    for module_name, class_name, attribute, label in PHASES:
        module = importlib.import_module(module_name)
        owner = getattr(module, class_name) if class_name else module
        setattr(owner, attribute, wrapped(getattr(owner, attribute), label))

    def write_table(*_: object) -> None:
        sessions = calls["whole session"] or 1
        lines = [f"{'phase':22} {'ms/STAT':>8} {'calls/STAT':>10}"]
        for *_names, label in PHASES:
            lines.append(
                f"{label:22} {totals[label] / sessions * 1000:8.3f} {calls[label] / sessions:10.1f}"
            )
        Path(out).write_text("\n".join(lines) + "\n")

    signal.signal(signal.SIGUSR1, write_table)
    # After the wrapping, so that serve runs the wrapped methods.
    from anweddol_actors.cli import main

    return main(["serve", "-c", config])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--serve-instrumented", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_instrumented:
        sys.exit(serve_instrumented(*args.serve_instrumented))

    server = ServeChild(libvirt_uri="test:///default")
    table = server.folder / "breakdown.txt"
    config = server.write_config()
    server.process = subprocess.Popen(
        [sys.executable, __file__, "--serve-instrumented", str(config), str(table)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                server.status(timeout=1)
                break
            except Exception:
                if time.monotonic() > deadline or server.process.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.2)
        client = make_client("project", server.port, generate_private_key(4096))
        client.stat()  # warm up; counted in the child's table, one session in hundreds
        before = cpu_seconds(server.pid)
        for _ in range(args.requests):
            client.stat()
        process_ms = (cpu_seconds(server.pid) - before) / args.requests * 1000
        os.kill(server.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not table.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)  # the child writes the file in one go; let it finish
        print(f"{args.requests} sequential STATs, project client, RSA-4096 keys")
        print(table.read_text(), end="")
        print(f"{'server process (/proc)':22} {process_ms:8.3f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
