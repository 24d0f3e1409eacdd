"""The request lines a real ``serve`` writes to its ``--log-file``: one per session that
asked something (or was refused), with its fields; never a token. Real sockets on
127.0.0.1, libvirt's test driver (no VM: STAT, refusals, a DESTROY of an unknown
container)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
import zipfile

from commands import write_test_driver_config
from servelog import ROOT, LoggingServer

from anweddol_actors.client import Client
from anweddol_actors.policy.access_tokens import AccessTokenStore

CLIENT_TOKEN = "T" * 255


def test_json_lines_carry_the_request_fields(tmp_path):
    tokens = tmp_path / "tokens.sqlite3"
    _, access_token = AccessTokenStore(tokens).add()
    config = write_test_driver_config(
        tmp_path,
        server="  log_format: json\n",
        sections=f"access_token:\n  enabled: true\n  access_token_database_file_path: '{tokens}'\n",
    )
    log_file = tmp_path / "log" / "server.log"
    server = LoggingServer(config, log_file)
    container = str(uuid.uuid4())
    try:
        client = Client("127.0.0.1", server.port, timeout=60)
        assert client.stat(access_token=access_token)["message"] == "OK"
        assert client.stat(access_token="x" * 40)["message"].startswith("Bad authentication")
        assert client.stat()["message"].startswith("Bad request")
        assert client.request("not a verb")["message"].startswith("Bad request")
        answer = client.destroy(container, CLIENT_TOKEN, access_token=access_token)
        assert not answer["success"]
    finally:
        assert server.stop() == 0

    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    requests = [r for r in records if r["logger"] == "anweddol_actors.requests"]
    assert [(r["verb"], r["outcome"]) for r in requests] == [
        ("STAT", "OK"),
        ("STAT", "Bad authentication"),
        ("STAT", "Bad request"),
        (None, "Bad request"),
        ("DESTROY", answer["message"].split(" (")[0]),
    ]
    assert len({r["connection"] for r in requests}) == 5
    for record in requests:
        assert re.fullmatch(r"[0-9a-f]{32}", record["connection"])
        assert record["client"] == "127.0.0.1"
        assert isinstance(record["duration_ms"], float) and record["duration_ms"] >= 0
        assert record["level"] == "INFO"
        assert record["message"].startswith(f"{record['verb'] or '-'} {record['outcome']} in ")
    assert [r["container"] for r in requests] == [None, None, None, None, container]
    text = log_file.read_text()
    assert access_token not in text and CLIENT_TOKEN not in text and "x" * 40 not in text


def test_text_lines_show_the_request_fields(tmp_path):
    log_file = tmp_path / "server.log"
    server = LoggingServer(write_test_driver_config(tmp_path), log_file)
    try:
        assert Client("127.0.0.1", server.port, timeout=60).stat()["message"] == "OK"
    finally:
        assert server.stop() == 0
    [line] = [line for line in log_file.read_text().splitlines() if "requests:" in line]
    assert re.fullmatch(
        r"\S+ \S+ INFO anweddol_actors\.requests: STAT OK in [\d.]+ ms "
        r"connection=[0-9a-f]{8} client=127\.0\.0\.1 verb=STAT container=- outcome=OK "
        r"duration_ms=[\d.]+",
        line,
    ), line


def test_rotation_from_the_configuration(tmp_path):
    archive_folder = tmp_path / "archived"
    config = write_test_driver_config(
        tmp_path,
        sections=(
            "log_rotation:\n  enabled: true\n  max_log_lines_amount: 3\n"
            f"  action: archive\n  log_archive_folder_path: '{archive_folder}'\n"
        ),
    )
    log_file = tmp_path / "server.log"
    server = LoggingServer(config, log_file)
    try:
        client = Client("127.0.0.1", server.port, timeout=60)
        for _ in range(3):
            client.stat()
    finally:
        assert server.stop() == 0
    held = []
    for path in sorted(archive_folder.iterdir()):
        with zipfile.ZipFile(path) as bundle:
            held.extend(bundle.read("server.log").decode().splitlines())
    every = held + log_file.read_text().splitlines()
    assert len(held) % 3 == 0 and len(held) >= 6
    assert len(log_file.read_text().splitlines()) <= 3
    assert sum("STAT OK" in line for line in every) == 3
    assert any("serving on" in line for line in held)


def test_unusable_log_file_is_a_one_line_error(tmp_path):
    (tmp_path / "plain").write_text("a file, not a folder")
    config = write_test_driver_config(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "anweddol_actors", "serve", "-c", str(config)]
        + ["--port", "0", "--log-file", str(tmp_path / "plain" / "server.log")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2, result.stderr
    plain = tmp_path / "plain"
    assert result.stderr.splitlines() == [
        f"error: cannot open the log file {plain}/server.log: {plain} is not a folder"
    ]
