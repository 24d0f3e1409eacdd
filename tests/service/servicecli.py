"""Running the service commands as an administrator would: ``python -m anweddol_actors
start|stop|status|restart -c FILE`` in child processes, on a configuration whose every path
is in one folder (PID file, log, journal, keys, admin socket), served on 127.0.0.1 with
libvirt's in-process test driver (no VM: what is tested here is the process's life)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from commands import command_env, run_command

ROOT = Path(__file__).resolve().parents[2]


def child_env(**extra: str) -> dict[str, str]:
    return command_env(**extra)


def cli(*args: str, timeout: float = 200) -> subprocess.CompletedProcess:
    return run_command(*args, timeout=timeout, cwd=ROOT)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_config(folder: Path, extra: str = "", **server: object) -> Path:
    """A configuration file keeping everything in ``folder``; ``server`` adds keys to the
    ``server`` section, ``extra`` whole sections."""
    iso = folder / "stand-in.iso"
    iso.write_bytes(b"not booted by these tests")
    keys = {
        "bind_address": "127.0.0.1",
        "listen_port": free_port(),
        "database": f"'{folder}/journal.sqlite3'",
        "public_rsa_key_file_path": f"'{folder}/rsa/public.pem'",
        "private_rsa_key_file_path": f"'{folder}/rsa/private.pem'",
        "pid_file_path": f"'{folder}/run/server.pid'",
        "log_file_path": f"'{folder}/log/server.log'",
        "admin_socket_path": f"'{folder}/run/admin.sock'",
        **server,
    }
    config = folder / "config.yaml"
    config.write_text(
        "container:\n"
        "  libvirt_uri: 'test:///default'\n"
        f"  container_iso_file_path: '{iso}'\n"
        "server:\n"
        + "".join(f"  {key}: {value}\n" for key, value in keys.items())
        + "port_forwarding:\n"
        "  port_range: [43000, 43099]\n"
        "  bind_address: 127.0.0.1\n" + extra
    )
    return config


def listen_port(config: Path) -> int:
    for line in config.read_text().splitlines():
        if line.strip().startswith("listen_port:"):
            return int(line.split(":")[1])
    raise AssertionError("no listen_port")


def json_of(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout)


def kill_leftover(pid_file: Path) -> None:
    """Teardown: a server a failed test left running is stopped by its PID (never by name)."""
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"anweddol_actors" not in cmdline:
        return
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)
