"""Two libvirt hosts behind one front end, end to end: a real ``serve`` configured with a
``hypervisors:`` list, host "one" the system libvirtd (qemu:///system, guests forwarded on
127.0.0.1) and host "two" a second, unprivileged libvirtd reached over the remote driver
(tests/secondhost.py: qemu+tcp://127.0.0.12:16511/session, guests forwarded on 127.0.0.12,
emulation, its own copy of the ISO), capacity 1 each. Clients only ever talk to the front
end (127.0.0.1): CREATE there, SSH to its public ports, which relay to the host's forward.

What is checked (issue 12, "Done when", for two hosts), booting as few guests as it takes:

- placement: two CREATEs land one on each host (libvirt and the journal agree) and both
  answer SSH through the front end; a third gets ``Unavailable``; STAT ``available`` sums
  the hosts; ``hosts list --json`` counts each host's containers and free slots;
- drain: a drained host keeps its live container, and once that container is destroyed
  a CREATE does not land there though it has room; ``hosts enable`` gives the room back;
- loss: the second daemon killed (SIGKILL) mid-life, its container is ``lost`` in the
  journal once ``container.host_lost_grace`` has passed, its token refused and its public
  port closed; once the daemon runs again the domain it left is destroyed (journalled).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from commands import run_command
from libvirtd import RECONNECT_BOUND
from probes import refuses, ssh_run
from secondhost import (  # noqa: F401 - second_host*: fixtures
    PORT,
    SecondHost,
    listening_on,
    second_host,
    second_host_daemon,
)
from serveprocess import ServeProcess, write_config
from serverharness import wait_for

pytestmark = pytest.mark.vm

# Seconds a host may be unreachable before its containers are lost: short, for the test.
LOST_GRACE = 3
# From the kill to the `lose` row: the connection's loss is seen at once (EOF on its
# socket) or by the keepalive, then the grace; generous for a loaded 2-core machine.
LOSS_BOUND = 60
# QEMU's forwards: the engine's guest port range (Settings.guest_port_range).
GUEST_PORTS = range(30000, 40000)


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_command(*args, timeout=180)


def hosts_config(tmp_path: Path, iso_one: Path, host: SecondHost, iso_two: Path) -> Path:
    """The front end's configuration: two hosts of capacity 1, an admin socket, a short
    grace."""
    return write_config(
        tmp_path,
        iso_one,
        container={"host_lost_grace": LOST_GRACE},
        admin_socket_path=f"'{tmp_path / 'run' / 'admin.sock'}'",
        sections=(
            "hypervisors:\n"
            "  - name: one\n"
            "    libvirt_uri: 'qemu:///system'\n"
            "    address: 127.0.0.1\n"
            "    max_containers: 1\n"
            "  - name: two\n"
            f"    libvirt_uri: '{host.uri}'\n"
            f"    address: {host.address}\n"
            "    max_containers: 1\n"
            "    domain_type: qemu\n"
            f"    container_iso_file_path: '{iso_two}'\n"
        ),
    )


def start_front_end(config: Path) -> ServeProcess:
    serve = ServeProcess(config)
    serve.wait_for_line(r"admin socket: ", timeout=30)
    return serve


def hosts(config: Path) -> dict[str, dict]:
    """``hosts list --json``'s ``data.hosts``, by host name."""
    listed = cli("hosts", "list", "--json", "-c", str(config))
    assert listed.returncode == 0, listed.stderr
    return {row["name"]: row for row in json.loads(listed.stdout)["data"]["hosts"]}


def hosts_say(config: Path, name: str, **expected: object) -> bool:
    row = hosts(config)[name]
    return all(row[key] == value for key, value in expected.items())


def journal_host(database: Path, container_uuid: str) -> str | None:
    """The host the journal says the container was made on (its entity data)."""
    with sqlite3.connect(database) as db:
        found = db.execute(
            "SELECT data FROM entities WHERE kind = 'container' AND entity_id = ?",
            (container_uuid,),
        ).fetchone()
    return None if found is None else json.loads(found[0]).get("host")


def container_rows(database: Path, container_uuid: str) -> list[tuple[str, str, str, dict]]:
    """The container's transitions, oldest first: (trigger, source, dest, details)."""
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT trigger, source, dest, details FROM transitions "
            "WHERE kind = 'container' AND entity_id = ? ORDER BY id",
            (container_uuid,),
        ).fetchall()
    return [
        (trigger, source, dest, json.loads(details or "{}"))
        for trigger, source, dest, details in rows
    ]


def logs_in(data: dict) -> bool:
    """The client's credentials log in through the front end's public port."""
    user = data["container_username"]
    return (
        ssh_run(data["container_listen_port"], user, data["container_password"], "id -un") == user
    )


def stat_available(serve: ServeProcess) -> object:
    answer = serve.client().stat()
    assert answer["success"] is True, answer
    return answer["data"]["available"]


def test_two_hosts_one_container_each_then_a_drained_host_gets_nothing(
    tmp_path,
    images,
    qemu,
    second_host,  # noqa: F811
):
    iso_two = second_host.provide_iso(images["dev"])
    config = hosts_config(tmp_path, images["dev"], second_host, iso_two)
    database = tmp_path / "journal.sqlite3"
    serve = start_front_end(config)
    try:
        wait_for(lambda: all(row["reachable"] for row in hosts(config).values()), 60, "hosts up")
        listed = hosts(config)
        assert set(listed) == {"one", "two"}
        assert listed["two"]["libvirt_uri"] == second_host.uri
        assert listed["two"]["address"] == second_host.address
        for row in listed.values():
            assert row["enabled"] is True
            assert (row["containers"], row["max_containers"], row["free_slots"]) == (0, 1, 1)
        assert stat_available(serve) == 2

        client = serve.client()
        made = []
        for _ in range(2):
            created = client.create()
            assert created["success"] is True, created
            made.append(created["data"])
        placed = {journal_host(database, data["container_uuid"]): data for data in made}
        assert set(placed) == {"one", "two"}, placed
        on_one, on_two = placed["one"], placed["two"]
        # libvirt agrees with the journal: each domain on its own host, and only there.
        assert on_two["container_uuid"] in second_host.marked_domains()
        assert on_two["container_uuid"] not in qemu.list_marked()
        assert on_one["container_uuid"] in qemu.list_marked()
        assert on_one["container_uuid"] not in second_host.marked_domains()
        # Host two's guest is forwarded on two's address; the client never sees that port.
        forwards = [port for port in listening_on(second_host.address) if port != PORT]
        assert len(forwards) == 1 and forwards[0] in GUEST_PORTS, forwards
        assert forwards[0] != on_two["container_listen_port"]
        # Both answer SSH through the front end's public ports.
        assert logs_in(on_one)
        assert logs_in(on_two)

        full = client.create()
        assert full["success"] is False and full["message"].startswith("Unavailable"), full
        assert stat_available(serve) == 0
        for row in hosts(config).values():
            assert (row["containers"], row["free_slots"]) == (1, 0)

        unknown = cli("hosts", "drain", "nowhere", "-c", str(config))
        assert unknown.returncode != 0
        assert "nowhere" in unknown.stdout + unknown.stderr

        drained = cli("hosts", "drain", "two", "-c", str(config))
        assert drained.returncode == 0, drained.stderr
        assert hosts_say(config, "two", enabled=False, containers=1)
        assert logs_in(on_two)  # a drained host's live containers run on

        ended = client.destroy(on_two["container_uuid"], on_two["client_token"])
        assert ended["message"] == "OK", ended
        assert on_two["container_uuid"] not in second_host.marked_domains()
        assert hosts_say(config, "two", enabled=False, containers=0)
        # Two has room but is drained, one is full: nowhere to go.
        assert stat_available(serve) == 0
        refused = client.create()
        assert refused["success"] is False, refused
        assert refused["message"].startswith("Unavailable"), refused
        assert second_host.marked_domains() == []
        assert on_one["container_uuid"] in qemu.list_marked()

        enabled = cli("hosts", "enable", "two", "-c", str(config))
        assert enabled.returncode == 0, enabled.stderr
        assert hosts_say(config, "two", enabled=True, containers=0, free_slots=1)
        assert stat_available(serve) == 1

        assert client.destroy(on_one["container_uuid"], on_one["client_token"])["message"] == "OK"
    finally:
        assert serve.stop() == 0, serve.log
    assert on_one["container_uuid"] not in qemu.list_marked()


def test_a_killed_host_loses_its_container_and_is_reconciled_when_back(
    tmp_path,
    images,
    qemu,
    second_host,  # noqa: F811
):
    iso_two = second_host.provide_iso(images["dev"])
    config = hosts_config(tmp_path, images["dev"], second_host, iso_two)
    database = tmp_path / "journal.sqlite3"
    serve = start_front_end(config)
    try:
        wait_for(lambda: all(row["reachable"] for row in hosts(config).values()), 60, "hosts up")
        # One drained: the one CREATE this test boots lands on two.
        assert cli("hosts", "drain", "one", "-c", str(config)).returncode == 0
        client = serve.client()
        created = client.create()
        assert created["success"] is True, created
        data = created["data"]
        container_uuid, public_port = data["container_uuid"], data["container_listen_port"]
        assert journal_host(database, container_uuid) == "two"
        assert container_uuid in second_host.marked_domains()
        assert logs_in(data)

        forwards = [port for port in listening_on(second_host.address) if port != PORT]
        second_host.kill()  # the host's daemon dies; its guest runs on
        assert listening_on(second_host.address) == forwards
        wait_for(lambda: hosts_say(config, "two", reachable=False), 30, "two unreachable")

        def lost() -> list[tuple[str, str, str, dict]]:
            return [
                row for row in container_rows(database, container_uuid) if row[2].endswith("lost")
            ]

        wait_for(lost, LOSS_BOUND, f"container lost {LOST_GRACE} s after the host")
        [(trigger, _source, _dest, details)] = lost()
        assert trigger == "lose"
        assert details["host"] == "two"
        assert details["unreachable_for"] >= LOST_GRACE
        # What the administrator sees: the journal command shows the same row.
        shown = cli(
            "journal",
            "--entity",
            container_uuid,
            "--kind",
            "container",
            "--json",
            "-c",
            str(config),
        )
        assert shown.returncode == 0, shown.stderr
        rows = json.loads(shown.stdout)["data"]["transitions"]
        assert any(row["trigger"] == "lose" for row in rows), rows

        # Its token is refused, its public port closed, and nothing else can be made.
        denied = client.destroy(container_uuid, data["client_token"])
        assert denied["message"] == "Bad authentication", denied
        assert refuses(public_port)
        assert client.create()["message"].startswith("Unavailable")

        # The daemon back (it finds its running guest again): the domain the lost container
        # left there is destroyed, and its forward with it.
        second_host.start()
        wait_for(lambda: hosts_say(config, "two", reachable=True), RECONNECT_BOUND + 30, "two back")
        wait_for(
            lambda: container_uuid not in second_host.marked_domains(),
            60,
            "the lost container's domain destroyed",
        )
        wait_for(
            lambda: container_rows(database, container_uuid)[-1][2] == "destroyed",
            30,
            "the lost container's end journalled",
        )
        history = container_rows(database, container_uuid)
        after_loss = history[[row[0] for row in history].index("lose") + 1 :]
        assert after_loss and after_loss[-1][2] == "destroyed", history
        assert listening_on(second_host.address) == [PORT]
        assert hosts_say(config, "two", reachable=True, containers=0)
    finally:
        assert serve.stop() == 0, serve.log
