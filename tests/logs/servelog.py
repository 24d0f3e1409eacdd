"""`python -m anweddol_actors serve --log-file PATH` as a child process on 127.0.0.1, for
the tests that read the log a real server writes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from commands import stop_process

ROOT = Path(__file__).resolve().parents[2]


class LoggingServer:
    """A started ``serve`` logging to ``log_file``; ``port`` is where it listens."""

    def __init__(self, config: Path, log_file: Path, *extra: str) -> None:
        self.log_file = log_file
        self.stderr_path = config.parent / "serve.stderr"
        env = {**os.environ}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env.pop("ANWEDDOL_ACTORS_CONFIG", None)
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "anweddol_actors", "serve", "-c", str(config)]
                + ["--port", "0", "--log-file", str(log_file), *extra],
                stderr=stderr,
                env=env,
            )
        match = self.wait_for(r"serving on [\d.]+:(\d+)", timeout=120)
        self.port = int(match.group(1))

    def text(self) -> str:
        try:
            return self.log_file.read_text()
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match:
        """The first match of ``pattern`` in the log file; fails when the server exits or
        ``timeout`` seconds pass first."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = compiled.search(self.text())
            if match:
                return match
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(
                    f"no {pattern!r} in the log (exit {self.process.poll()}):\n"
                    f"{self.text()[-3000:]}\nstderr:\n{self.stderr_path.read_text()[-3000:]}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 120) -> int:
        return stop_process(self.process, timeout)
