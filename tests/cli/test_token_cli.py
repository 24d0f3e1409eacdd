"""``token``: ``-c FILE`` before or after the action, ``--db`` over it, and ``list --json``
in the original's shape plus each token's creation time and state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest


def token(*args: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "ANWEDDOL_ACTORS_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "anweddol_actors", "token", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )


@pytest.fixture
def config(tmp_path) -> tuple[Path, Path]:
    db = tmp_path / "tokens" / "access_tokens.sqlite3"
    path = tmp_path / "config.yaml"
    path.write_text(f"access_token:\n  access_token_database_file_path: '{db}'\n")
    return path, db


def test_config_option_before_and_after_the_action(config):
    path, db = config
    after = token("add", "-c", str(path), "--json")
    assert after.returncode == 0, after.stderr
    before = token("-c", str(path), "--json", "add", "--disabled")
    assert before.returncode == 0, before.stderr
    assert db.exists()
    ids = [json.loads(r.stdout)["data"]["entry_id"] for r in (after, before)]
    assert ids == [1, 2]
    for action in ("enable", "disable", "delete"):
        result = token(action, "2", "-c", str(path))
        assert result.returncode == 0, result.stderr
        # The source on standard error; standard output stays the result, for scripts.
        assert result.stderr == f"configuration: {path}\n"
    listed = json.loads(token("list", "--json", "-c", str(path)).stdout)
    assert [entry[0] for entry in listed["data"]["entry_list"]] == [1]


def test_list_json_is_the_originals_shape_with_time_and_state(config):
    path, _ = config
    token("add", "-c", str(path))
    token("add", "--disabled", "-c", str(path))
    document = json.loads(token("list", "-c", str(path), "--json").stdout)
    assert document["status"] == "OK" and document["message"] == "Recorded entries ID"
    entry_list = document["data"]["entry_list"]
    # The original's listEntries(): (entry_id, creation_timestamp, enabled) per token.
    assert [(e[0], e[2]) for e in entry_list] == [(1, True), (2, False)]
    assert all(isinstance(e[1], int) for e in entry_list)
    entries = document["data"]["entries"]
    assert [(e["entry_id"], e["state"], e["enabled"]) for e in entries] == [
        (1, "enabled", True),
        (2, "disabled", False),
    ]
    for entry, original in zip(entries, entry_list, strict=True):
        assert entry["creation_timestamp"] == original[1]
        created = datetime.fromisoformat(entry["created"])
        assert created.timestamp() == original[1] and created.utcoffset().total_seconds() == 0
    text = token("list", "-c", str(path)).stdout.splitlines()
    assert [line.split()[:2] for line in text] == [["1", "enabled"], ["2", "disabled"]]


def test_db_overrides_the_configuration(config, tmp_path):
    path, db = config
    other = tmp_path / "other.sqlite3"
    assert token("add", "-c", str(path), "--db", str(other)).returncode == 0
    assert other.exists() and not db.exists()


def test_errors_are_one_line_or_the_json_error_shape(config, tmp_path):
    path, _ = config
    result = token("delete", "7", "-c", str(path), "--json")
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document["status"] == "ERROR" and "entry ID 7" in document["data"]["error"]
    result = token("list", "-c", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"error: {tmp_path / 'absent.yaml'}: no such file"]
