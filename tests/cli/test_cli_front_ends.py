"""``front-ends list`` and the front-end column of ``containers list`` as an administrator
types them (child processes of this tree), against the admin channels of two real servers
sharing one PostgreSQL journal (started by the tests, tests/pgserver.py), each on a host
of libvirt's test driver; and a lone server, whose tables stay as they were."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from commands import run_command
from hostsharness import hosts_server, node_host
from serverharness import serve_stand_in

from anweddol_actors.admin.server import AdminServer
from anweddol_actors.cli.front_ends import table
from anweddol_actors.client import Client

FRONT_END_KEYS = {"name", "address", "lease_until", "taken_by", "expired", "self"}
CONTAINER_KEYS = {
    "uuid",
    "host",
    "state",
    "age",
    "client",
    "port",
    "expires_at",
    "expires_in",
    "front_end",
}


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_command(*args, timeout=120)


def config_of(folder: Path, socket_path: Path) -> Path:
    """The configuration file the CLI reads: where the server's admin socket is."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(f"server:\n  admin_socket_path: '{socket_path}'\n")
    return path


class FrontEnd:
    """A started in-process server named ``name`` on the shared journal, its admin
    channel, and the configuration file the CLI is given to reach it."""

    def __init__(self, rsa, folder: Path, guest_port: int, name: str | None, database: str):
        folder.mkdir(parents=True, exist_ok=True)
        # One host, "h", of capacity 2, seen by each front end on its own test driver.
        hosts = (node_host(folder, "h", 2),)
        overrides = {"database": database, "front_end": name, "front_end_lease": 30.0}
        self.running = hosts_server(rsa, folder, guest_port, hosts, **overrides).start()
        socket_path = folder / "run" / "admin.sock"
        self.admin = AdminServer(self.running.engine, str(socket_path)).start()
        self.config = config_of(folder, socket_path)

    def close(self) -> None:
        self.admin.close()
        if self.running.thread.is_alive():
            self.running.stop()


@pytest.fixture
def two(rsa, tmp_path, pg_url, guest):
    """Front ends ``one`` and ``two`` on one PostgreSQL journal; both closed at teardown."""
    started = []
    try:
        for name in ("one", "two"):
            started.append(FrontEnd(rsa, tmp_path / name, guest.port, name, pg_url))
        yield started
    finally:
        for front_end in reversed(started):
            front_end.close()


@pytest.fixture
def alone(rsa, tmp_path, guest):
    """A server with no front-end name, on a SQLite journal: the server of before."""
    front_end = FrontEnd(rsa, tmp_path / "alone", guest.port, None, str(tmp_path / "j.sqlite3"))
    try:
        yield front_end
    finally:
        front_end.close()


def listed(config: Path, command: str) -> tuple[str, list[dict]]:
    """``COMMAND list --json``: its message and its rows."""
    result = cli(command, "list", "--json", "-c", str(config))
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["status"] == "OK"
    key = "front_ends" if command == "front-ends" else "containers"
    assert list(shown["data"]) == [key]
    return shown["message"], shown["data"][key]


def test_front_ends_list_json(two):
    one, other = two
    message, rows = listed(one.config, "front-ends")
    assert message == "Front ends"
    assert [row["name"] for row in rows] == ["one", "two"]
    assert all(set(row) == FRONT_END_KEYS for row in rows)
    assert [row["self"] for row in rows] == [True, False]
    assert [(row["taken_by"], row["expired"]) for row in rows] == [(None, False)] * 2
    # What the engine registered: the address each serves, a lease in the future.
    for row, front_end in zip(rows, two, strict=True):
        journal_row = {r["name"]: r for r in front_end.running.engine.journal.front_ends()}
        assert row["address"] == journal_row[row["name"]]["address"]
        assert row["lease_until"] == pytest.approx(journal_row[row["name"]]["lease_until"])
    # Asked at the other front end, the mark moves.
    _, rows = listed(other.config, "front-ends")
    assert [(row["name"], row["self"]) for row in rows] == [("one", False), ("two", True)]


def test_front_ends_list_table(two):
    one, _ = two
    result = cli("front-ends", "list", "-c", str(one.config))
    assert result.returncode == 0, result.stderr
    header, first, second = result.stdout.splitlines()
    assert header.split() == ["name", "address", "lease", "taken", "by"]
    assert first.startswith("* one ") and second.startswith("  two ")
    for line in (first, second):
        cells = line.lstrip("* ").split()
        assert cells[2].endswith("s") and cells[2] != "expired", line
        assert cells[3] == "-"


def test_a_server_without_a_name_lists_no_front_ends(alone):
    message, rows = listed(alone.config, "front-ends")
    assert (message, rows) == ("Front ends", [])
    result = cli("front-ends", "list", "-c", str(alone.config))
    assert (result.returncode, result.stdout) == (
        0,
        "no front ends (this server has no server.front_end name)\n",
    )


def test_containers_list_shows_every_front_ends_containers(two):
    one, other = two
    created = Client(*one.running.address, timeout=30).create()
    assert created["success"] is True, created
    uuid = created["data"]["container_uuid"]
    port = created["data"]["container_listen_port"]

    # At its owner: the registry's row, with the owner's name.
    _, rows = listed(one.config, "containers")
    (mine,) = rows
    assert set(mine) == CONTAINER_KEYS
    assert (mine["uuid"], mine["host"], mine["port"], mine["front_end"]) == (
        uuid,
        "h",
        port,
        "one",
    )
    assert isinstance(mine["age"], int)

    # At the other front end: the journal's row, what it holds, the rest null.
    _, rows = listed(other.config, "containers")
    (theirs,) = rows
    assert set(theirs) == CONTAINER_KEYS
    assert theirs == {
        "uuid": uuid,
        "host": "h",
        "state": mine["state"],
        "age": None,
        "client": mine["client"],
        "port": port,
        "expires_at": None,
        "expires_in": None,
        "front_end": "one",
    }

    result = cli("containers", "list", "-c", str(other.config))
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == [
        "uuid",
        "host",
        "state",
        "age",
        "client",
        "port",
        "expires",
        "front",
        "end",
    ]
    assert row.split() == [uuid, "h", mine["state"], "-", mine["client"], str(port), "-", "one"]

    # containers destroy works at either front end: asked at the other, the owner is told
    # and ends it (its forwarder, its domain, its journal rows saying who asked).
    result = cli("containers", "destroy", uuid, "-c", str(other.config))
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    journal = one.running.engine.journal
    assert journal.entity(uuid, kind="container")["state"] == "destroyed"
    reasons = [(row["details"] or {}).get("reason") for row in journal.history(uuid)]
    assert "destroyed by an administrator at front end two" in reasons
    assert not journal.has_credentials(uuid)
    token = created["data"]["client_token"]
    denied = Client(*one.running.address, timeout=30).destroy(uuid, token)
    assert denied["message"] == "Bad authentication"
    assert listed(one.config, "containers")[1] == []
    assert listed(other.config, "containers")[1] == []


def test_a_lone_servers_containers_table_has_no_front_end_column(alone):
    uuid, _token = serve_stand_in(alone.running.engine)
    _, rows = listed(alone.config, "containers")
    (row,) = rows
    assert set(row) == CONTAINER_KEYS  # the key is there, null
    assert (row["uuid"], row["front_end"]) == (uuid, None)
    result = cli("containers", "list", "-c", str(alone.config))
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert header.split() == ["uuid", "host", "state", "age", "client", "port", "expires"]


@pytest.mark.parametrize(
    ("row", "lease", "taken_by"),
    [
        ({"lease_until": 1027.4, "expired": False}, "27s", "-"),
        ({"lease_until": 1090.0, "expired": False}, "1m30s", "-"),
        # Expired by the server's clock, or by this machine's: expired either way.
        ({"lease_until": 1030.0, "expired": True}, "expired", "-"),
        ({"lease_until": 999.0, "expired": False}, "expired", "-"),
        ({"lease_until": 990.0, "expired": True, "taken_by": "two"}, "expired", "two"),
    ],
)
def test_the_lease_column(row, lease, taken_by):
    rows = [{"name": "one", "address": "127.0.0.1:6150", "taken_by": None, "self": True, **row}]
    header, line = table(rows, now=1000.0).splitlines()
    assert line.startswith("* one ")
    assert line.split() == ["*", "one", "127.0.0.1:6150", lease, taken_by]
