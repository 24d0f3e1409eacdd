"""The soak, for one minute (``benchmarks/soak.py``): mixed and hostile clients, one
libvirtd restart (at 18 s) and one guest poweroff (at 30 s), then nothing leaked and every
CREATE answered. One minute keeps both faults inside the run with guests live around
them; longer soaks are the benchmark's (``--minutes 10``), not the suite's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_one_minute_soak_leaks_nothing(tmp_path):
    report = tmp_path / "soak.json"
    # This test holds the VM tests' lock (tests/conftest.py): the soak must not take it.
    command = [sys.executable, str(SOAK), "--minutes", "1", "--lock-held", "--json", str(report)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900)
    print(run.stdout)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}"
    assert "problems: 0" in run.stdout
