"""docs/anweddol_actors.service: systemd accepts it, and its stop timeout leaves serve
its whole stop bound."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from anweddol_actors.cli.serve import STOP_BOUND

UNIT = Path(__file__).resolve().parents[2] / "docs" / "anweddol_actors.service"


def directives(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            found[key.strip()] = value.strip()
    return found


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path):
    text = UNIT.read_text()
    if not Path("/usr/bin/python3").exists():
        # verify checks that ExecStart's program exists: point it at this interpreter.
        text = text.replace("/usr/bin/python3", sys.executable)
    unit = tmp_path / "anweddol_actors.service"
    unit.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    # Only lines about our unit matter (the host's other units may warn).
    ours = [line for line in result.stderr.splitlines() if "anweddol_actors" in line]
    assert ours == [], result.stderr


def test_unit_runs_serve_in_the_foreground():
    unit = directives(UNIT.read_text())
    assert unit["Type"] == "simple"
    assert " -m anweddol_actors serve -c /etc/anweddol_actors/config.yaml" in unit["ExecStart"]
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["KillSignal"] == "SIGTERM"
    assert int(unit["TimeoutStopSec"]) > STOP_BOUND
    assert unit["Restart"] == "on-failure"
