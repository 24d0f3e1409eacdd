"""The journal on SQLite and on PostgreSQL, each against its raw driver doing the same.

Not a test: it prints numbers. Every figure is transitions/s, one transaction each (a
transition row and the entity's current-state row, then a commit), for ``--seconds``:

- SQLite file: ``Journal.record`` against the same two statements through ``sqlite3``
  alone, same schema, same pragmas (WAL, ``synchronous=FULL``): anweddol_actors.bench.journal,
  as ``python -m anweddol_actors bench`` measures it.
- PostgreSQL, synced: ``Journal.record`` against raw psycopg2 running the journal's two
  statements (the transition INSERT ... RETURNING, the entity upsert) in one transaction
  per commit, on the same server and database, with the journal's connection parameters.
- PostgreSQL, unsynced: ``Journal.record_many([row], sync=False)`` against the same raw
  transaction with ``SET LOCAL synchronous_commit = off`` in it.
- PostgreSQL against SQLite: the synced journals' ratio.

The PostgreSQL server is this script's own: Debian's binaries started by tests/pgcluster.py
(as the tests start theirs) into a temporary folder, listening on 127.0.0.1 only, with
``fsync=on``; the SQLite file is in a temporary folder on the same file system. Both are
stopped and removed at the end, on an error, on Ctrl-C and on SIGTERM.

    .venv/bin/python benchmarks/journal_backends.py [--seconds 3] [--rounds 3] [--json FILE]

Each figure is the median of ``--rounds`` rounds; a round measures every pair in turn.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import psycopg2  # noqa: E402

from anweddol_actors.bench import journal as sqlite_bench  # noqa: E402
from anweddol_actors.bench.stats import ratio  # noqa: E402
from anweddol_actors.journal.database import parse_location  # noqa: E402
from anweddol_actors.journal.store import Journal  # noqa: E402
from tests import pgcluster  # noqa: E402

# The journal's statements on PostgreSQL for one row (journal/store.py writes them for any
# number of rows): the baseline pays the same writes and index updates. psycopg2 sends its
# BEGIN with the first statement; Peewee, whose connection is in autocommit mode, sends its
# own, a round trip more that is counted as the journal's cost.
INSERT_TRANSITION = (
    'INSERT INTO "transitions" ("time", "kind", "entity_id", "trigger", "source", "dest",'
    " \"context\", \"details\") VALUES (%s, 'session', %s, 'step', 'a', 'b', NULL, %s)"
    ' RETURNING "id"'
)
UPSERT_ENTITY = (
    'INSERT INTO "entities" ("kind", "entity_id", "state", "terminal", "data", "updated",'
    " \"owner\") VALUES ('session', %s, 'b', false, '{}', %s, '')"
    ' ON CONFLICT ("kind", "entity_id")'
    ' DO UPDATE SET "state" = EXCLUDED."state", "terminal" = EXCLUDED."terminal",'
    ' "data" = EXCLUDED."data", "updated" = EXCLUDED."updated"'
)
UNSYNCED = "SET LOCAL synchronous_commit = off"


def journal_rate(url: str, seconds: float, *, sync: bool) -> float:
    """Transitions/s of the journal at *url*: ``record`` when synced, else
    ``record_many([row], sync=False)``, one commit each."""
    with Journal(url) as journal:
        entity = str(uuid.uuid4())
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            row = {
                "kind": "session",
                "entity_id": entity,
                "trigger": "step",
                "source": "a",
                "dest": "b",
                "details": {"n": count},
            }
            if sync:
                journal.record(**row)
            else:
                journal.record_many([row], sync=False)
            count += 1
        return count / (time.perf_counter() - started)


def raw_postgresql_rate(url: str, seconds: float, *, sync: bool) -> float:
    """Transitions/s of the journal's two statements through psycopg2 alone, one
    transaction each (``synchronous_commit = off`` in it when not *sync*), on the schema
    the journal made in the same database."""
    location = parse_location(url)
    connection = psycopg2.connect(dbname=location.database, **location.parameters)
    try:
        entity = str(uuid.uuid4())
        count, started = 0, time.perf_counter()
        with connection.cursor() as cursor:
            while time.perf_counter() - started < seconds:
                now = datetime.now(UTC).isoformat(timespec="microseconds")
                if not sync:
                    cursor.execute(UNSYNCED)  # psycopg2 opened the transaction: LOCAL to it
                cursor.execute(INSERT_TRANSITION, (now, entity, json.dumps({"n": count})))
                cursor.fetchone()
                cursor.execute(UPSERT_ENTITY, (entity, now))
                connection.commit()
                count += 1
        return count / (time.perf_counter() - started)
    finally:
        connection.close()


def measure(
    seconds: float, rounds: int, server: pgcluster.PgServer, folder: Path
) -> dict[str, Any]:
    """Every figure, the median of ``rounds`` rounds; each round measures SQLite's pair
    (journal and raw), then PostgreSQL's synced and unsynced pairs, so that the machine's
    drift spreads over all of them and a journal is always next to its baseline."""
    samples: dict[str, list[float]] = {
        f"{backend}_{what}": []
        for backend in ("sqlite", "synced", "unsynced")
        for what in ("journal", "raw")
    }
    database = server.create_database("bench")
    url = server.url(database)
    try:
        Journal(url).close()  # the schema, made by the journal itself, before any timing
        for _round in range(rounds):
            sqlite = sqlite_bench.measure(seconds, folder)
            samples["sqlite_journal"].append(sqlite["transitions_per_second"])
            samples["sqlite_raw"].append(sqlite["raw_sqlite_per_second"])
            for sync in (True, False):
                name = "synced" if sync else "unsynced"
                samples[f"{name}_journal"].append(journal_rate(url, seconds, sync=sync))
                samples[f"{name}_raw"].append(raw_postgresql_rate(url, seconds, sync=sync))
    finally:
        server.drop_database(database)

    def pair(name: str) -> dict[str, Any]:
        journal = statistics.median(samples[f"{name}_journal"])
        raw = statistics.median(samples[f"{name}_raw"])
        return {
            "journal_per_second": journal,
            "raw_per_second": raw,
            "vs_raw": ratio(journal, raw),
            "samples": {"journal": samples[f"{name}_journal"], "raw": samples[f"{name}_raw"]},
        }

    sqlite_figures = pair("sqlite")
    synced = pair("synced")
    return {
        "seconds": seconds,
        "rounds": rounds,
        "sqlite": {**sqlite_figures, "pragmas": list(sqlite_bench.PRAGMAS)},
        "postgresql": {"version": server.version, "synced": synced, "unsynced": pair("unsynced")},
        "postgresql_vs_sqlite": ratio(
            synced["journal_per_second"], sqlite_figures["journal_per_second"]
        ),
    }


def render(result: dict[str, Any]) -> str:
    sqlite, pg = result["sqlite"], result["postgresql"]
    rows = [
        ("SQLite file, synced (WAL, synchronous=FULL)", sqlite),
        (f"PostgreSQL {pg['version']}, synced (synchronous_commit=on)", pg["synced"]),
        (f"PostgreSQL {pg['version']}, unsynced (synchronous_commit=off)", pg["unsynced"]),
    ]
    lines = [
        f"Journal transitions/s, one transaction each: median of {result['rounds']} rounds"
        f" of {result['seconds']:g} s a measurement",
        f"{'':58}{'journal /s':>11}{'raw /s':>10}{'÷ raw':>8}",
    ]
    for label, figures in rows:
        lines.append(
            f"{label:58}{figures['journal_per_second']:>11.1f}{figures['raw_per_second']:>10.1f}"
            f"{figures['vs_raw']:>8.2f}"
        )
    lines.append(f"PostgreSQL ÷ SQLite (synced journals): {result['postgresql_vs_sqlite']:.2f}")
    lines.append(
        "raw: sqlite3 / psycopg2 running the journal's two statements, same schema and settings"
    )
    return "\n".join(lines)


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that clean up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="length of each measurement (default 3)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of every measurement (default 3)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1:
        parser.error("--seconds must be positive and --rounds at least 1")
    signal.signal(signal.SIGTERM, _terminate)
    folder = Path(tempfile.mkdtemp(prefix="anweddol-bench-backends-"))
    server = None
    try:
        server = pgcluster.start()  # stops what it started itself when it fails
        result = measure(args.seconds, args.rounds, server, folder)
        # Removed below; named so that a run can be checked to have left nothing behind.
        result["folders"] = [str(folder), str(server.folder)]
    except pgcluster.PgUnavailable as exc:
        print(f"journal_backends: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "journal_backends: interrupted; the server and files it started are removed",
            file=sys.stderr,
        )
        return 130
    finally:
        if server is not None:
            pgcluster.stop(server)
        shutil.rmtree(folder, ignore_errors=True)
    print(render(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
