"""The project's commands as child processes, the way an administrator types them:
``python -m anweddol_actors ...`` with this checkout on the path, and never the machine's
own ``/etc/anweddol_actors/config.yaml`` deciding a test's configuration; ``serve`` as a
running child whose lines a test waits for, and the configuration of a loopback server on
libvirt's test driver."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where no file is: a command given no -c reads the embedded default, whatever the host has.
NO_SYSTEM_CONFIG = "/nonexistent/anweddol_actors.yaml"


def kill_at_marker(code: str, *args: str, marker: Path, what: str) -> int:
    """Run ``python -c code args...``, SIGKILL it once it creates ``marker`` (bounded
    wait: ``what`` names the moment in the failure), and return its exit status."""
    child = subprocess.Popen([sys.executable, "-c", code, *args], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline, f"the child never reached {what}"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        child.stderr.close()
    return child.returncode


def command_env(**extra: str) -> dict[str, str]:
    """The environment of a child command: this checkout importable, no system file."""
    env = {**os.environ, "ANWEDDOL_ACTORS_CONFIG": NO_SYSTEM_CONFIG}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_command(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m anweddol_actors ARGS`` to its end (bounded); text output captured."""
    return subprocess.run(
        [sys.executable, "-m", "anweddol_actors", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=command_env(**(env or {})),
        cwd=cwd,
    )


def stop_process(process: subprocess.Popen, timeout: float = 120) -> int:
    """SIGTERM, then wait; SIGKILL (and fail) if it does not end in ``timeout`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"server did not stop within {timeout} s") from None
    return process.returncode


def write_test_driver_config(folder: Path, server: str = "", sections: str = "") -> Path:
    """A loopback server on libvirt's test driver (nothing boots), its journal and keys in
    ``folder``; ``server`` adds lines to the ``server`` section, ``sections`` whole
    sections."""
    iso = folder / "stand-in.iso"
    iso.write_bytes(b"not booted by these tests")
    config = folder / "config.yaml"
    config.write_text(
        "container:\n"
        "  libvirt_uri: 'test:///default'\n"
        f"  container_iso_file_path: '{iso}'\n"
        # Nothing boots on the test driver: a pool would only wait for a guest that never
        # answers.
        "  warm_pool_size: 0\n"
        "server:\n"
        "  bind_address: 127.0.0.1\n"
        f"  database: '{folder}/journal.sqlite3'\n"
        f"  public_rsa_key_file_path: '{folder}/rsa/public.pem'\n"
        f"  private_rsa_key_file_path: '{folder}/rsa/private.pem'\n"
        f"{server}"
        f"{sections}"
    )
    return config


class ServeChild:
    """``python -m anweddol_actors serve ARGS`` as a running child.

    Its standard error is drained by a thread into ``lines`` (an undrained pipe would
    block a chatty server), so a test can wait for a line (``wait_for_line``) while the
    server runs. ``env`` adds variables to :func:`command_env`'s.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "anweddol_actors", "serve", *args],
            stderr=subprocess.PIPE,
            text=True,
            env=command_env(**(env or {})),
        )
        self.lines: list[str] = []
        self._new_line = threading.Condition()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for line in self.process.stderr:
            with self._new_line:
                self.lines.append(line)
                self._new_line.notify_all()
        with self._new_line:
            self._new_line.notify_all()

    def wait_for_line(self, pattern: str, timeout: float = 60) -> re.Match:
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

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM, then wait; SIGKILL (and fail) if it does not end in ``timeout``."""
        code = stop_process(self.process, timeout)
        self._reader.join(timeout=10)
        return code
