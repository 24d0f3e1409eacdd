"""``serve`` out of file descriptors (EMFILE), for real: a server process under a low
``RLIMIT_NOFILE`` is flooded with idle connections until ``accept`` fails. The listener
must back off and log at a bounded rate (not spin and flood the log), the sessions already
accepted must keep working, and once descriptors are free again new clients are served."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from commands import write_test_driver_config
from rawpeer import RawPeer

from anweddol_actors.client import Client

NOFILE = 64
TREE = Path(__file__).resolve().parents[2]  # the tree under test, for the child's imports


def limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def wait_for_port(log: Path, process: subprocess.Popen) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = re.search(r"serving on [\d.]+:(\d+)", log.read_text())
        if match:
            return int(match.group(1))
        assert process.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError("no 'serving on' line:\n" + log.read_text())


def accept_failure_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "accept failed" in line]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_out_of_descriptors_the_listener_backs_off_and_recovers(tmp_path, client_key):
    config = write_test_driver_config(tmp_path)
    with config.open("a") as extra:
        # Caps and timeouts out of the way: the descriptor limit is what this test hits.
        extra.write(
            "  timeout: 60\n"
            "  request_deadline: 120\n"
            "  max_connections: 10000\n"
            "  max_connections_per_address: 10000\n"
        )
    log = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(TREE)}
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "anweddol_actors", "serve", "--config", str(config)]
            + ["--port", "0"],
            stderr=stderr,
            stdout=subprocess.DEVNULL,
            preexec_fn=limit_fds,
            env=env,
            cwd=TREE,
        )
    idle: list[socket.socket] = []
    try:
        port = wait_for_port(log, process)
        address = ("127.0.0.1", port)
        # The first connection is accepted while descriptors are free: a live session.
        live = RawPeer(address, client_key, timeout=30)
        deadline = time.monotonic() + 30
        while open_fds(process.pid) < NOFILE and time.monotonic() < deadline:
            for _ in range(8):
                idle.append(socket.create_connection(address, timeout=5))
            time.sleep(0.1)
        assert open_fds(process.pid) >= NOFILE - 1, "the server never ran out of descriptors"
        # More connections queue in the backlog; accept keeps failing for a few seconds.
        for _ in range(20):
            idle.append(socket.create_connection(address, timeout=5))
        time.sleep(4)
        failures = accept_failure_lines(log)
        assert failures, "accept never failed:\n" + log.read_text()[-2000:]
        # A spinning retry wrote tens of thousands of lines here; at most one per 5 s now.
        assert len(failures) <= 2, failures
        assert "Too many open files" in failures[0]

        # The live session still works while accepts fail.
        live.handshake()
        assert live.request("STAT")["success"] is True
        live.close()

        # Descriptors freed: the queued connections are accepted (and end), new clients
        # are served.
        for sock in idle:
            sock.close()
        idle.clear()
        deadline = time.monotonic() + 30
        while True:
            try:
                response = Client("127.0.0.1", port, timeout=10).stat()
                break
            except Exception:
                assert time.monotonic() < deadline, "the server did not recover"
                time.sleep(0.5)
        assert response["success"] is True
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        for sock in idle:
            sock.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert len(accept_failure_lines(log)) <= 4
