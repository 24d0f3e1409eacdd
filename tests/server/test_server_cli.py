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


def write_config(tmp_path: Path) -> Path:
    iso = tmp_path / "stand-in.iso"
    iso.write_bytes(b"not booted by this test")
    config = tmp_path / "config.yaml"
    config.write_text(
        "container:\n"
        "  libvirt_uri: 'test:///default'\n"
        f"  container_iso_file_path: '{iso}'\n"
        "server:\n"
        "  bind_address: 127.0.0.1\n"
        f"  database: '{tmp_path}/journal.sqlite3'\n"
        f"  public_rsa_key_file_path: '{tmp_path}/rsa/public.pem'\n"
        f"  private_rsa_key_file_path: '{tmp_path}/rsa/private.pem'\n"
    )
    return config


def test_port_in_use(tmp_path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        config = write_config(tmp_path)
        port = str(taken.getsockname()[1])
        line = one_line_error(serve("--config", str(config), "--port", port))
    assert "cannot listen on 127.0.0.1:" in line


def test_serves_until_sigterm_and_keeps_its_keys(tmp_path):
    config = write_config(tmp_path)
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

    rows = json.loads(result.stdout)
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
    assert json.loads(run("list").stdout)["data"]["entry_list"] == [created["data"]["entry_id"]]
    assert run("delete", "99").returncode == 2
    assert created["data"]["access_token"].encode() not in Path(db).read_bytes()
