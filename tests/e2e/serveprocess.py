"""`python -m anweddol_actors serve` as a child process, for the tests that kill it.

Its standard error is drained by a thread into ``lines`` (an undrained pipe would block a
chatty server), so a test can wait for a line (``wait_for_line``) while the server runs.
The child runs the code of this checkout whatever the current directory.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from commands import stop_process

from anweddol_actors.client import Client

ROOT = Path(__file__).resolve().parents[2]

# Loopback ports for the forwarders: the e2e range (tests/e2e/conftest.py).
FORWARDER_PORTS = (41000, 41999)


def write_config(
    folder: Path,
    iso: str | Path,
    mode: str = "destroy",
    ports: tuple[int, int] = FORWARDER_PORTS,
    **server: object,
) -> Path:
    """A configuration file for a loopback server on its own journal and keys in
    ``folder``; ``server`` adds keys to the ``server`` section."""
    extra = "".join(f"  {key}: {value}\n" for key, value in server.items())
    config = folder / "config.yaml"
    config.write_text(
        "container:\n"
        "  libvirt_uri: 'qemu:///system'\n"
        f"  container_iso_file_path: '{iso}'\n"
        "  container_memory: 256\n"
        "  container_vcpus: 1\n"
        "server:\n"
        "  bind_address: 127.0.0.1\n"
        f"  database: '{folder}/journal.sqlite3'\n"
        f"  public_rsa_key_file_path: '{folder}/rsa/public.pem'\n"
        f"  private_rsa_key_file_path: '{folder}/rsa/private.pem'\n"
        f"  on_start_live_containers: {mode}\n"
        f"{extra}"
        "port_forwarding:\n"
        f"  port_range: [{ports[0]}, {ports[1]}]\n"
        "  bind_address: 127.0.0.1\n"
    )
    return config


class ServeProcess:
    """A started server; ``port`` is where it listens."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        child_env = {**os.environ, **(env or {})}
        child_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "anweddol_actors", "serve", "--config", str(config)]
            + ["--port", "0"],
            stderr=subprocess.PIPE,
            text=True,
            env=child_env,
        )
        self.lines: list[str] = []
        self._new_line = threading.Condition()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        match = self.wait_for_line(r"serving on [\d.]+:(\d+)", timeout=120)
        self.port = int(match.group(1))

    def _drain(self) -> None:
        for line in self.process.stderr:
            with self._new_line:
                self.lines.append(line)
                self._new_line.notify_all()
        with self._new_line:
            self._new_line.notify_all()

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match:
        """The first line (from the start) matching ``pattern``; fails when the server
        exits or ``timeout`` seconds pass first."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._new_line:
            while True:
                for line in self.lines[seen:]:
                    match = compiled.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no line matching {pattern!r} (exit {self.process.poll()}); "
                        f"last lines:\n{''.join(self.lines[-15:])}"
                    )
                self._new_line.wait(min(left, 0.5))

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def client(self, timeout: float = 240) -> Client:
        return Client("127.0.0.1", self.port, timeout=timeout)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._reader.join(timeout=10)

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM, then wait; SIGKILL (and fail) if it does not end in ``timeout``."""
        code = stop_process(self.process, timeout)
        self._reader.join(timeout=10)
        return code
