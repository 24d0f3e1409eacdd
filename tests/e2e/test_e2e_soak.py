"""The soak, for two minutes (``benchmarks/soak.py``): mixed and hostile clients, one
libvirtd restart and one guest poweroff, then nothing leaked and every CREATE answered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_two_minute_soak_leaks_nothing(tmp_path):
    report = tmp_path / "soak.json"
    # This test holds the VM tests' lock (tests/conftest.py): the soak must not take it.
    command = [sys.executable, str(SOAK), "--minutes", "2", "--lock-held", "--json", str(report)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900)
    print(run.stdout)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}"
    assert "problems: 0" in run.stdout
