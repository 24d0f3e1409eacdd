"""The project's commands as child processes, the way an administrator types them:
``python -m anweddol_actors ...`` with this checkout on the path, and never the machine's
own ``/etc/anweddol_actors/config.yaml`` deciding a test's configuration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where no file is: a command given no -c reads the embedded default, whatever the host has.
NO_SYSTEM_CONFIG = "/nonexistent/anweddol_actors.yaml"


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
