"""benchmarks/front_ends.py runs to the end with two front ends and an unnamed server on a
real PostgreSQL it starts itself, prints every figure and leaves nothing behind (no
server folder, no PostgreSQL, no marked domain, no live container). The figures
themselves are not checked: speed is the benchmark's to report, not a test's to assert:
only that each is a number."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "front_ends.py"

# Each row: its label, then its median and its p90.
ROWS = (
    "DESTROY at the owner front end (baseline)",
    "DESTROY at the other front end (NOTIFY)",
    "other ÷ owner",
    "CREATE at an unnamed server (baseline)",
    "CREATE at a named front end (shared claim)",
    "named ÷ unnamed",
)
FIGURES = ("destroy_owner", "destroy_other", "create_unnamed", "create_named")
RATIOS = ("destroy_ratio", "create_ratio")


def test_front_ends_prints_every_figure_and_cleans_up(tmp_path):
    output = tmp_path / "figures.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--cycles", "2", "--json", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for label in ROWS:
        row = [line for line in lines if line.strip().startswith(label)]
        assert len(row) == 1, (label, done.stdout)
        for figure in row[0].split()[-2:]:
            float(figure)  # a number, whatever its value
    assert (
        "marked domains left on test:///default: none; live containers left in the "
        "journals: none" in lines
    ), done.stdout

    figures = json.loads(output.read_text())
    assert figures["cycles"] == 2
    for name in FIGURES:
        section = figures["figures"][name]
        assert len(section["samples"]) == 2, (name, section)
        for key in ("median", "p90"):
            assert isinstance(section[key], float), (name, key, section)
    for name in RATIOS:
        for key in ("median", "p90"):
            assert isinstance(figures["figures"][name][key], float), (name, key)
    assert figures["left"] == {"domains": [], "containers": []}
    for folder in figures["folders"]:  # the servers' and the PostgreSQL server's
        assert not Path(folder).exists(), folder


def test_front_ends_refuses_zero_cycles(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--cycles", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "--cycles must be at least 1" in done.stderr
    assert done.stdout == ""
