"""Journal transitions/s against raw SQLite inserts with the same settings.

The journal writes each transition as one transaction (a transition row and the entity's
current-state row, then a commit: one fsync with ``synchronous=FULL``). The baseline does
the same two statements through ``sqlite3`` alone, on a file with the journal's own schema
(created by the journal, then closed) and the journal's pragmas (WAL, ``synchronous=FULL``,
foreign keys): what is left between the two is the journal's own cost (peewee, the lock,
JSON encoding), the disk's being in both.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anweddol_actors.bench.stats import ratio
from anweddol_actors.journal.store import Journal

# The journal's pragmas (journal/store.py): the baseline must pay the same fsyncs.
PRAGMAS = ("PRAGMA journal_mode=wal", "PRAGMA synchronous=full", "PRAGMA foreign_keys=1")


def _journal_rate(path: Path, seconds: float) -> float:
    with Journal(str(path)) as journal:
        entity = str(uuid.uuid4())
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            journal.record(
                kind="session",
                entity_id=entity,
                trigger="step",
                source="a",
                dest="b",
                details={"n": count},
            )
            count += 1
        return count / (time.perf_counter() - started)


def _raw_rate(path: Path, seconds: float) -> float:
    Journal(str(path)).close()  # the same schema, made by the journal itself
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        for pragma in PRAGMAS:
            db.execute(pragma)
        entity = str(uuid.uuid4())
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            now = datetime.now(UTC).isoformat(timespec="microseconds")
            db.execute("BEGIN")
            db.execute(
                "INSERT INTO transitions (time, kind, entity_id, trigger, source, dest, context,"
                " details) VALUES (?, 'session', ?, 'step', 'a', 'b', NULL, ?)",
                (now, entity, json.dumps({"n": count})),
            )
            db.execute(
                "INSERT INTO entities (kind, entity_id, state, terminal, data, updated, owner)"
                " VALUES ('session', ?, 'b', 0, '{}', ?, '') ON CONFLICT (kind, entity_id)"
                " DO UPDATE SET state = excluded.state, terminal = excluded.terminal,"
                " data = excluded.data, updated = excluded.updated",
                (entity, now),
            )
            db.execute("COMMIT")
            count += 1
        return count / (time.perf_counter() - started)
    finally:
        db.close()


def measure(seconds: float, folder: Path | None = None) -> dict[str, Any]:
    """The ``journal`` section: transitions/s of the journal and of raw SQLite, one
    transaction each, on files in ``folder`` (a temporary folder by default)."""
    where = Path(tempfile.mkdtemp(prefix="anweddol-bench-journal-", dir=folder))
    try:
        journal = _journal_rate(where / "journal.sqlite3", seconds)
        raw = _raw_rate(where / "raw.sqlite3", seconds)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    return {
        "transitions_per_second": journal,
        "raw_sqlite_per_second": raw,
        "vs_raw": ratio(journal, raw),
        "pragmas": list(PRAGMAS),
    }
