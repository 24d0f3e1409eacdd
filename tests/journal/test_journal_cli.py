"""``python -m anweddol_actors journal`` against a real journal file."""

import json
import subprocess
import sys

import pytest

from anweddol_actors.cli.journal import COLUMNS
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle


def transitions(stdout: str) -> list:
    """The rows of ``journal --json``: the original's shape, rows in data.transitions."""
    answer = json.loads(stdout)
    assert (answer["status"], answer["message"]) == ("OK", "Journal transitions")
    return answer["data"]["transitions"]


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "anweddol_actors", "journal", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("journal") / "journal.sqlite3"
    with Journal(path) as journal:
        container = Lifecycle("container", "c-1", journal)
        container.fire("start", context=4, details={"domain": "anweddol-c-1"})
        Lifecycle("session", 4, journal).fire("start", context=4)
        container.fire("administer")
        expected = journal.history()
    return path, expected


def test_json_is_the_history_oldest_first(db):
    path, expected = db
    result = cli("--json", "--db", str(path))
    assert result.returncode == 0, result.stderr
    assert transitions(result.stdout) == expected


def test_json_filters_by_entity_and_kind(db):
    path, expected = db
    by_entity = transitions(cli("--json", "--entity", "c-1", "--db", str(path)).stdout)
    assert by_entity == [row for row in expected if row["entity_id"] == "c-1"]
    by_kind = transitions(cli("--json", "--kind", "session", "--db", f"sqlite:///{path}").stdout)
    assert by_kind == [row for row in expected if row["kind"] == "session"]
    assert transitions(cli("--json", "--entity", "nobody", "--db", str(path)).stdout) == []


def test_table_is_aligned(db):
    path, expected = db
    result = cli("--db", str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == list(COLUMNS)
    assert len(lines) == 1 + len(expected)
    for column in ("trigger", "dest", "details"):
        offset = lines[0].index(column)
        assert all(line[offset - 2 : offset] == "  " for line in lines[1:]), column
        assert all(line[offset] != " " for line in lines[1:]), column
    assert '{"domain":"anweddol-c-1"}' in lines[1]
    assert lines[3].split()[:5] == ["3", expected[2]["time"], "container", "c-1", "administer"]


def test_missing_database_is_one_line_error(tmp_path):
    result = cli("--db", str(tmp_path / "absent.sqlite3"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "journal database not found" in result.stderr
    assert not (tmp_path / "absent.sqlite3").exists()


def write_config(folder, database) -> str:
    path = folder / "config.yaml"
    path.write_text(f"server:\n  database: '{database}'\n")
    return str(path)


def test_config_file_names_the_journal(db, tmp_path):
    path, expected = db
    config = write_config(tmp_path, path)
    result = cli("-c", config, "--entity", "c-1", "--json")
    assert result.returncode == 0, result.stderr
    assert transitions(result.stdout) == [row for row in expected if row["entity_id"] == "c-1"]
    table = cli("--config", config)
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 1 + len(expected)
    # Standard output stays the table; the source goes to standard error.
    assert table.stderr == f"configuration: {config}\n"


def test_db_overrides_the_config_file(db, tmp_path):
    path, expected = db
    config = write_config(tmp_path, tmp_path / "absent.sqlite3")
    result = cli("-c", config, "--db", str(path), "--json")
    assert transitions(result.stdout) == expected
    result = cli("-c", config, "--json")
    assert result.returncode == 2 and "journal database not found" in result.stdout


def test_system_file_from_the_environment(db, tmp_path, monkeypatch):
    path, expected = db
    monkeypatch.setenv("ANWEDDOL_ACTORS_CONFIG", write_config(tmp_path, path))
    assert transitions(cli("--json").stdout) == expected


def test_statecharts_reads_the_journal_of_the_config_file(db, tmp_path):
    path, _ = db
    config = write_config(tmp_path, path)
    out = tmp_path / "charts"
    result = subprocess.run(
        [sys.executable, "-m", "anweddol_actors", "statecharts", "-c", config, "--entity", "c-1"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["container-c-1.mmd", "container-c-1.svg"]
    assert "administered" in (out / "container-c-1.mmd").read_text()
