"""``python -m anweddol_actors serve`` as an administrator runs it: bad configuration and
arguments are one-line errors with a non-zero exit; a good one serves until SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from commands import write_test_driver_config

from anweddol_actors.client import Client


def serve(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "anweddol_actors", "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    # Log lines of the start-up may come first; the error itself is one line, the last.
    assert errors == [lines[-1]], result.stderr
    return errors[0]


def test_missing_config_file(tmp_path):
    line = one_line_error(serve("--config", str(tmp_path / "nope.yaml")))
    assert "nope.yaml" in line


def test_invalid_config_value(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("container:\n  container_memory: lots\n")
    line = one_line_error(serve("--config", str(config)))
    assert "container.container_memory" in line


def test_bad_port_argument():
    line = one_line_error(serve("--port", "70000"))
    assert "--port" in line


def test_unreadable_iso(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        f"container:\n  libvirt_uri: 'test:///default'\n"
        f"server:\n  database: '{tmp_path}/j.sqlite3'\n"
    )
    line = one_line_error(serve("--config", str(config), "--iso", str(tmp_path / "none.iso")))
    assert "none.iso" in line


def test_port_in_use(tmp_path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        config = write_test_driver_config(tmp_path)
        port = str(taken.getsockname()[1])
        line = one_line_error(serve("--config", str(config), "--port", port))
    assert "cannot listen on 127.0.0.1:" in line


def test_serves_until_sigterm_and_keeps_its_keys(tmp_path):
    config = write_test_driver_config(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "anweddol_actors", "serve", "--config", str(config), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            match = re.search(r"serving on [\d.]+:(\d+)", line)
            if match:
                port = int(match.group(1))
        assert port, "no 'serving on' line"
        assert Client("127.0.0.1", port, timeout=10).stat()["success"] is True
        private = tmp_path / "rsa" / "private.pem"
        assert private.exists() and (private.stat().st_mode & 0o777) == 0o600
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # The journal file holds the server's whole life, oldest first.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "anweddol_actors",
            "journal",
            "--db",
            str(tmp_path / "journal.sqlite3"),
            "--kind",
            "server",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    import json

    rows = json.loads(result.stdout)["data"]["transitions"]
    assert [row["trigger"] for row in rows] == ["start", "stop", "destroy"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to write the token database")
def test_token_cli_round_trip(tmp_path):
    db = str(tmp_path / "tokens.sqlite3")
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "anweddol_actors", "token", "--db", db, "--json", *a],
        capture_output=True,
        text=True,
        timeout=60,
    )
    import json

    created = json.loads(run("add").stdout)
    assert len(created["data"]["access_token"]) == 124
    listed = json.loads(run("list").stdout)["data"]["entry_list"]
    assert [entry[0] for entry in listed] == [created["data"]["entry_id"]]
    assert run("delete", "99").returncode == 2
    assert created["data"]["access_token"].encode() not in Path(db).read_bytes()


def start_serving(config: Path) -> tuple[subprocess.Popen, int, list[str]]:
    """``serve -c config --port 0``: the process, its port and its log lines so far."""
    process = subprocess.Popen(
        [sys.executable, "-m", "anweddol_actors", "serve", "--config", str(config), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        match = re.search(r"serving on [\d.]+:(\d+)", line)
        if match:
            return process, int(match.group(1)), lines
    stop_serving(process)
    raise AssertionError("no 'serving on' line:\n" + "\n".join(lines))


def stop_serving(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def test_timeout_null_serves_with_waits_bounded_by_the_deadline(tmp_path):
    # The original's file allowed `timeout: null`; here it is no per-wait timeout, and the
    # request deadline still bounds the waits (before the request, and each one after it).
    from rawpeer import RawPeer, closed_by_peer

    from anweddol_actors.protocol.crypto import generate_private_key

    config = write_test_driver_config(tmp_path)
    config.write_text(
        config.read_text().replace("server:\n", "server:\n  timeout: null\n  request_deadline: 2\n")
    )
    process, port, lines = start_serving(config)
    try:
        assert Client("127.0.0.1", port, timeout=10).stat()["success"] is True
        # Silent after connecting: cut at the request deadline.
        peer = RawPeer(("127.0.0.1", port), generate_private_key(2048))
        assert closed_by_peer(peer.sock, timeout=30)
        peer.close()
        # Never acknowledges the response: cut too (a wait after the request).
        peer = RawPeer(("127.0.0.1", port), generate_private_key(2048))
        peer.handshake()
        assert peer.send_frame(b'{"verb": "STAT", "parameters": {}}') == b"1"
        assert closed_by_peer(peer.sock, timeout=30)
        peer.close()
        assert Client("127.0.0.1", port, timeout=10).stat()["success"] is True
    finally:
        assert stop_serving(process) == 0
    assert not any("Traceback" in line for line in lines)


def test_original_key_and_warnings_at_start(tmp_path):
    # The original's key pair, where its file says (PKCS#1 "traditional" PEM): kept, so
    # clients that pinned the old key see the same one.
    from cryptography.hazmat.primitives import serialization

    from anweddol_actors.protocol.crypto import fingerprint, generate_private_key

    key = generate_private_key(2048)
    rsa = tmp_path / "rsa"
    rsa.mkdir()
    (rsa / "private.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    (rsa / "public.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    iso = tmp_path / "stand-in.iso"
    iso.write_bytes(b"not booted by this test")
    config = tmp_path / "original.yaml"
    config.write_text(
        "container:\n"
        "  libvirt_uri: 'test:///default'\n"
        f"  container_iso_file_path: '{iso}'\n"
        "  nat_interface_name: virbr0\n"
        "  wait_max_tryout: 20\n"
        "server:\n"
        "  bind_address: 127.0.0.1\n"
        f"  database: '{tmp_path}/journal.sqlite3'\n"
        f"  public_rsa_key_file_path: '{rsa}/public.pem'\n"
        f"  private_rsa_key_file_path: '{rsa}/private.pem'\n"
        "  enable_onetime_rsa_keys: False\n"
        "web_server:\n"
        "  pid_file_path: /var/run/anweddol_web.pid\n"
    )
    process, port, lines = start_serving(config)
    try:
        assert Client("127.0.0.1", port, timeout=10).stat()["success"] is True
    finally:
        assert stop_serving(process) == 0
    assert any(f"configuration: {config}" in line for line in lines)
    warnings = [line.split(": ", 1)[1] for line in lines if " WARNING " in line]
    assert [w.split(" ", 1)[0] for w in warnings] == [
        "container.nat_interface_name",
        "container.wait_max_tryout",
        "web_server.pid_file_path:",
    ]
    assert any(f"RSA key fingerprint (SHA-256): {fingerprint(key)}" in line for line in lines)


def test_seed_server_interface_with_no_client_timeout(make_server, client_key):
    # The seed's ServerInterface(client_timeout=None): no per-wait timeout, the deadline
    # still applies.
    from rawpeer import RawPeer, closed_by_peer

    running = make_server(client_timeout=None, request_deadline=2)
    assert running.server.engine.settings.client_timeout is None
    assert Client(*running.address, timeout=10).stat()["success"] is True
    peer = RawPeer(running.address, client_key)
    assert closed_by_peer(peer.sock, timeout=30)
    peer.close()
