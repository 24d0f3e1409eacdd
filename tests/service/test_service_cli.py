"""``start``, ``status``, ``stop``, ``restart`` against a real detached server: the PID
file, the refusals, the stale files, the JSON shapes and the exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from servicecli import cli, json_of, listen_port, write_config

from anweddol_actors.client import Client
from anweddol_actors.service import pidfile


def test_start_status_stop(folder):
    config = write_config(folder)
    pid_path = folder / "run" / "server.pid"

    started = cli("start", "-c", str(config))
    assert started.returncode == 0, started.stderr
    pid = int(pid_path.read_text())
    assert started.stdout == f"started (PID {pid})\n"
    # Detached: its own session, no terminal, and it serves.
    assert os.getsid(pid) == pid
    assert Client("127.0.0.1", listen_port(config), timeout=10).stat()["success"] is True

    status = cli("status", "-c", str(config))
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"running (PID {pid})\n")
    assert "key fingerprint:" in status.stdout and str(config) in status.stdout

    stopped = cli("stop", "-c", str(config))
    assert (stopped.returncode, stopped.stdout) == (0, "stopped\n")
    assert not pidfile.is_our_serve(pid)
    assert not pid_path.exists()  # serve removed it at exit
    log = (folder / "log" / "server.log").read_text()
    assert "serving on 127.0.0.1" in log and "stopped" in log

    after = cli("status", "-c", str(config))
    assert after.returncode == 3
    assert after.stdout.startswith("not running")


def test_status_json(folder):
    config = write_config(folder)
    assert cli("start", "-c", str(config), "--json").returncode == 0
    try:
        result = cli("status", "-c", str(config), "--json")
        assert result.returncode == 0
        answer = json_of(result)
        assert (answer["status"], answer["message"]) == ("OK", "Server is running")
        data = answer["data"]
        assert data["pid"] == int((folder / "run" / "server.pid").read_text())
        assert data["running"] is True and data["uptime"] >= 0
        assert len(data["fingerprint"]) == 64
        assert data["config"] == str(config)
    finally:
        stopped = cli("stop", "-c", str(config), "--json")
    assert json_of(stopped) == {
        "status": "OK",
        "message": "Server is stopped",
        "data": {"pid": data["pid"]},
    }
    result = cli("status", "-c", str(config), "--json")
    assert result.returncode == 3
    assert json_of(result)["data"]["running"] is False


def test_stop_when_nothing_runs(folder):
    config = write_config(folder)
    result = cli("stop", "-c", str(config))
    assert result.returncode == 1
    assert result.stdout == f"not running (no PID file {folder}/run/server.pid)\n"
    result = cli("stop", "-c", str(config), "--json")
    assert result.returncode == 1
    assert json_of(result)["status"] == "ERROR"


def test_start_twice_is_refused(folder):
    config = write_config(folder)
    assert cli("start", "-c", str(config)).returncode == 0
    try:
        pid = int((folder / "run" / "server.pid").read_text())
        again = cli("start", "-c", str(config))
        assert again.returncode == 1
        assert again.stdout == (f"already running (PID {pid}, PID file {folder}/run/server.pid)\n")
        # A serve in the foreground on the same PID file is refused too, before any work.
        serve = cli("serve", "-c", str(config), "--port", "0")
        assert serve.returncode == 2
        assert serve.stderr.splitlines()[-1] == (
            f"error: {folder}/run/server.pid names a running server (PID {pid})"
        )
        assert pidfile.is_our_serve(pid)
    finally:
        assert cli("stop", "-c", str(config)).returncode == 0


def test_stale_pid_file(folder):
    config = write_config(folder)
    pid_path = folder / "run" / "server.pid"
    pid_path.parent.mkdir()
    # A live process that is not our server (this test): never signalled, never trusted.
    pid_path.write_text(f"{os.getpid()}\n")
    result = cli("stop", "-c", str(config))
    assert result.returncode == 1
    assert "stale PID file removed" in result.stdout
    assert not pid_path.exists()

    # A dead PID: start replaces the file.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid_path.write_text(f"{dead.pid}\n")
    assert cli("status", "-c", str(config)).returncode == 3
    started = cli("start", "-c", str(config))
    assert started.returncode == 0, started.stdout
    try:
        assert int(pid_path.read_text()) != dead.pid
    finally:
        assert cli("stop", "-c", str(config)).returncode == 0


def test_restart(folder):
    config = write_config(folder)
    first = cli("restart", "-c", str(config))  # nothing runs: just a start
    assert first.returncode == 0, first.stdout
    old = int((folder / "run" / "server.pid").read_text())
    try:
        again = cli("restart", "-c", str(config), "--json")
        assert again.returncode == 0
        assert json_of(again)["message"] == "Server is started"
        new = int((folder / "run" / "server.pid").read_text())
        assert new != old and not pidfile.is_our_serve(old) and pidfile.is_our_serve(new)
    finally:
        assert cli("stop", "-c", str(config)).returncode == 0


def test_start_failure_reports_the_error(folder):
    config = write_config(folder)
    config.write_text(config.read_text().replace(str(folder / "stand-in.iso"), "/nonexistent.iso"))
    result = cli("start", "-c", str(config))
    assert result.returncode == 1
    assert result.stdout == (
        "the server did not start: container ISO /nonexistent.iso is missing or unreadable "
        f"(log: {folder}/log/server.log)\n"
    )
    assert not (folder / "run" / "server.pid").exists()


def test_default_paths_when_null(folder, monkeypatch):
    """With no PID file configured the system default is used (not written by tests)."""
    from anweddol_actors.cli.service import pid_file_of
    from anweddol_actors.config import config_from_mapping

    assert pid_file_of(config_from_mapping({})) == "/run/anweddol_actors/server.pid"
    path = Path(folder / "x.pid")
    assert pid_file_of(config_from_mapping({"server": {"pid_file_path": str(path)}})) == str(path)
