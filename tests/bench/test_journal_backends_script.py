"""benchmarks/journal_backends.py runs to the end on a real PostgreSQL it starts itself,
prints every figure and leaves nothing behind. The figures themselves are not checked:
speed is the benchmark's to report, not a test's to assert: only that each is a number."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "journal_backends.py"

LABELS = (
    "SQLite file, synced (WAL, synchronous=FULL)",
    "PostgreSQL 1",  # the version follows: 15, 16, ...
    ", synced (synchronous_commit=on)",
    ", unsynced (synchronous_commit=off)",
    "PostgreSQL ÷ SQLite (synced journals):",
)


def test_journal_backends_prints_every_figure_and_cleans_up(tmp_path):
    output = tmp_path / "figures.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--seconds", "0.2", "--rounds", "1", "--json", str(output)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    for label in LABELS:
        assert label in done.stdout, done.stdout
    # Three rows of three figures (journal /s, raw /s, ratio), then the backends' ratio.
    rows = [line for line in done.stdout.splitlines() if line.startswith(("SQLite", "PostgreSQL"))]
    assert len(rows) == 4, done.stdout
    for row in rows[:3]:
        for figure in row.split()[-3:]:
            float(figure)  # a number, whatever its value
    figures = json.loads(output.read_text())
    for section in (
        figures["sqlite"],
        figures["postgresql"]["synced"],
        figures["postgresql"]["unsynced"],
    ):
        for key in ("journal_per_second", "raw_per_second", "vs_raw"):
            assert isinstance(section[key], float), (key, section)
    assert isinstance(figures["postgresql_vs_sqlite"], float)
    for folder in figures["folders"]:  # the SQLite files' and the PostgreSQL server's
        assert not Path(folder).exists(), folder
