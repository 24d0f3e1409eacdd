"""Two front ends on one PostgreSQL journal, end to end (issue 12, item 6): two real
``serve`` processes, ``one`` on 127.0.0.1 and ``two`` on 127.0.0.2 (each its server and its
forwarders on its own address, forwarder ports from disjoint halves of the e2e range),
sharing ``server.database`` (a fresh database of the session's PostgreSQL server,
tests/pgserver.py) and one ``hypervisors:`` list: host ``h``, the system libvirtd
(qemu:///system), capacity 1. Each front end has a lease of 3 s.

What is checked, through the protocol, the journal's rows in PostgreSQL and libvirt:

- a container made at ``one`` is ``one``'s (its forwarder is there; SSH logs in through
  it); the host's one slot is shared, so a CREATE at ``two`` is ``Unavailable``; its
  DESTROY sent to ``two`` works: the domain is gone, the token refused at both front ends,
  ``one`` told (LISTEN/NOTIFY) stops the forwarder, the container and its forwarder are
  terminal in the journal (the reason naming ``two``), and the slot is free again for
  ``two``; stopped cleanly, both leave the journal's ``front_ends``;
- ``one`` killed (SIGKILL): once its lease has run out, ``two`` destroys its container
  and journals why (naming ``one``); its credentials are gone; ``one`` started again finds
  nothing to adopt and serves.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import psycopg2
import pytest
from probes import refuses, ssh_run
from serveprocess import ServeProcess, write_config
from serverharness import wait_for

pytestmark = pytest.mark.vm

# Seconds of a front end's lease (the smallest the configuration takes): renewed every
# second, so a killed front end is expired 3 s after its last renewal.
LEASE = 3
# From the SIGKILL to the domain destroyed by the other front end: the lease, the other's
# next takeover tick, a domain destroy and its journal rows; generous for a loaded 2-core
# machine running guests under emulation.
TAKEOVER_BOUND = 90
# From a DESTROY at the other front end to the owner having ended its container (the
# NOTIFY reaches it at once; its listener's wait is bounded, and a lost connection is
# listened again).
NOTIFY_BOUND = 60
HOST = "h"
# Each front end: its address, and its half of the e2e forwarder range (tests/e2e/conftest).
FRONT_ENDS = {
    "one": ("127.0.0.1", (41000, 41499)),
    "two": ("127.0.0.2", (41500, 41999)),
}


def front_end_config(tmp_path: Path, iso: Path, name: str, journal: str) -> Path:
    """The configuration of front end ``name``: its own folder (keys, admin socket), its
    own address and ports, the shared journal and the shared host list."""
    address, ports = FRONT_ENDS[name]
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return write_config(
        folder,
        iso,
        ports=ports,
        address=address,
        database=journal,
        front_end=f"{{name: {name}, lease: {LEASE}}}",
        admin_socket_path=f"'{folder / 'run' / 'admin.sock'}'",
        sections=(
            "hypervisors:\n"
            f"  - name: {HOST}\n"
            "    libvirt_uri: 'qemu:///system'\n"
            "    address: 127.0.0.1\n"
            "    max_containers: 1\n"
        ),
    )


def start_front_end(config: Path) -> ServeProcess:
    serve = ServeProcess(config)
    serve.wait_for_line(r"admin socket: ", timeout=30)
    return serve


def query(url: str, sql: str, *params: object) -> list[tuple]:
    """Rows of one statement on the shared journal, read as an administrator would (a
    connection of its own, outside both front ends)."""
    connection = psycopg2.connect(url, connect_timeout=10)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        connection.close()


def entity(url: str, kind: str, entity_id: str) -> dict | None:
    """The journal's row of one entity: its state, whether it is terminal, its owner."""
    found = query(
        url,
        "SELECT state, terminal, owner FROM entities WHERE kind = %s AND entity_id = %s",
        kind,
        entity_id,
    )
    if not found:
        return None
    state, terminal, owner = found[0]
    return {"state": state, "terminal": bool(terminal), "owner": owner}


def terminal(url: str, kind: str, entity_id: str) -> bool:
    row = entity(url, kind, entity_id)
    return row is not None and row["terminal"]


def transitions(url: str, container_uuid: str) -> list[tuple[str, str, str, dict]]:
    """The container's transitions, oldest first: (trigger, source, dest, details)."""
    rows = query(
        url,
        "SELECT trigger, source, dest, details FROM transitions "
        "WHERE kind = 'container' AND entity_id = %s ORDER BY id",
        container_uuid,
    )
    return [
        (trigger, source, dest, json.loads(details or "{}") or {})
        for trigger, source, dest, details in rows
    ]


def has_credentials(url: str, container_uuid: str) -> bool:
    digest = hashlib.sha256(container_uuid.encode()).hexdigest()
    return query(url, "SELECT count(*) FROM credentials WHERE uuid_sha256 = %s", digest)[0][0] > 0


def live_containers_of(url: str, owner: str) -> list[str]:
    rows = query(
        url,
        "SELECT entity_id FROM entities WHERE kind = 'container' AND owner = %s AND NOT terminal",
        owner,
    )
    return [row[0] for row in rows]


def reason_names(details: dict, name: str) -> bool:
    """Whether a transition's journalled reason names front end ``name`` (as a word)."""
    reason = details.get("reason")
    word = rf"(?<![\w.-]){re.escape(name)}(?![\w.-])"
    return isinstance(reason, str) and re.search(word, reason) is not None


def logs_in(data: dict) -> bool:
    """The client's credentials log in through its public port (on 127.0.0.1: front end
    ``one``'s address, the only one probes.ssh_run dials)."""
    user = data["container_username"]
    return (
        ssh_run(data["container_listen_port"], user, data["container_password"], "id -un") == user
    )


def create(serve: ServeProcess) -> dict:
    created = serve.client().create()
    assert created["success"] is True, (created, serve.log[-3000:])
    return created["data"]


def destroy(serve: ServeProcess, data: dict) -> dict:
    return serve.client().destroy(data["container_uuid"], data["client_token"])


def start_pair(
    tmp_path: Path, iso: Path, journal_url: str
) -> tuple[Path, ServeProcess, ServeProcess]:
    """Front ends ``one`` then ``two`` on the shared journal (the first creates its schema):
    one's configuration (to start it again) and both processes. Nothing is left running
    when the second cannot start."""
    config_one = front_end_config(tmp_path, iso, "one", journal_url)
    config_two = front_end_config(tmp_path, iso, "two", journal_url)
    one = start_front_end(config_one)
    try:
        two = start_front_end(config_two)
    except BaseException:
        stop_all(one)
        raise
    return config_one, one, two


def stop_all(*serves: ServeProcess) -> None:
    """Stop each front end still running (SIGTERM: its containers ended); each must exit 0."""
    codes = {}
    for serve in serves:
        if serve is not None and serve.process.poll() is None:
            codes[serve] = serve.stop()
    for serve, code in codes.items():
        assert code == 0, serve.log[-5000:]


def test_a_container_made_at_one_front_end_is_destroyed_through_the_other(
    tmp_path, images, qemu, pg_url
):
    journal_url = pg_url  # the front ends' shared journal: a fresh database, dropped after
    config_one, one, two = start_pair(tmp_path, images["dev"], journal_url)
    try:
        assert (one.address, two.address) == ("127.0.0.1", "127.0.0.2")
        # Both registered in the journal, each with the address it serves, neither taken.
        assert query(
            journal_url, "SELECT name, address, taken_by FROM front_ends ORDER BY name"
        ) == [
            ("one", f"127.0.0.1:{one.port}", None),
            ("two", f"127.0.0.2:{two.port}", None),
        ]

        data = create(one)
        container_uuid, public_port = data["container_uuid"], data["container_listen_port"]
        assert FRONT_ENDS["one"][1][0] <= public_port <= FRONT_ENDS["one"][1][1], data
        assert container_uuid in qemu.list_marked()
        assert logs_in(data)
        # The container and its forwarder (entity "UUID.forwarder") are one's in the journal.
        assert entity(journal_url, "container", container_uuid)["owner"] == "one"
        assert entity(journal_url, "forwarder", f"{container_uuid}.forwarder")["owner"] == "one"
        assert has_credentials(journal_url, container_uuid)

        # The host's one slot is taken, whichever front end asks.
        full = two.client().create()
        assert full["success"] is False, full
        assert full["message"].startswith("Unavailable"), full

        # The DESTROY reaches the front end that did not make the container.
        ended = destroy(two, data)
        assert ended["success"] is True and ended["message"] == "OK", (ended, two.log[-3000:])
        assert container_uuid not in qemu.list_marked()
        assert not has_credentials(journal_url, container_uuid)
        for serve in (two, one):
            again = destroy(serve, data)
            assert again["success"] is False, again
            assert again["message"] == "Bad authentication", again
        # The owner, told through LISTEN/NOTIFY, ends its side: the forwarder stops and
        # both entities end in the journal.
        wait_for(lambda: refuses(public_port), NOTIFY_BOUND, "one's forwarder port closed")
        wait_for(
            lambda: terminal(journal_url, "forwarder", f"{container_uuid}.forwarder"),
            NOTIFY_BOUND,
            "the forwarder terminal in the journal",
        )
        wait_for(
            lambda: terminal(journal_url, "container", container_uuid),
            NOTIFY_BOUND,
            "the container terminal in the journal",
        )
        container = entity(journal_url, "container", container_uuid)
        assert container["state"] == "destroyed", container
        assert container["owner"] == "one", container  # its owner outlives its end
        history = transitions(journal_url, container_uuid)
        assert history[-1][2] == "destroyed", history
        # Ended by its owner for the DESTROY two received: the journal says so.
        assert any(reason_names(details, "two") for *_, details in history), history

        # The slot is free again: two makes a container (its own), then ends it.
        second = create(two)
        assert FRONT_ENDS["two"][1][0] <= second["container_listen_port"] <= FRONT_ENDS["two"][1][1]
        assert second["container_uuid"] in qemu.list_marked()
        assert entity(journal_url, "container", second["container_uuid"])["owner"] == "two"
        assert destroy(two, second)["message"] == "OK"
        assert second["container_uuid"] not in qemu.list_marked()
    finally:
        stop_all(two, one)
    # A clean stop leaves the journal's front ends: nobody is left to take over.
    assert query(journal_url, "SELECT name FROM front_ends") == []


def test_a_killed_front_end_has_its_containers_destroyed_by_the_other(
    tmp_path, images, qemu, pg_url
):
    journal_url = pg_url  # the front ends' shared journal: a fresh database, dropped after
    config_one, one, two = start_pair(tmp_path, images["dev"], journal_url)
    try:
        data = create(one)
        container_uuid = data["container_uuid"]
        assert container_uuid in qemu.list_marked()
        assert entity(journal_url, "container", container_uuid)["owner"] == "one"
        assert has_credentials(journal_url, container_uuid)

        one.kill()  # no clean stop: its lease is simply no longer renewed
        wait_for(
            lambda: container_uuid not in qemu.list_marked(),
            TAKEOVER_BOUND,
            f"two destroying one's domain after the {LEASE} s lease",
        )
        wait_for(
            lambda: terminal(journal_url, "container", container_uuid),
            NOTIFY_BOUND,
            "one's container terminal in the journal",
        )
        history = transitions(journal_url, container_uuid)
        assert history[-1][2] == "destroyed", history
        served = [row[0] for row in history].index("serve")
        # The end is journalled with its reason: one's lease, taken over by two.
        ended_for_one = [row for row in history[served + 1 :] if reason_names(row[3], "one")]
        assert ended_for_one, history
        assert ended_for_one[-1][3].get("front_end") == "one", history
        assert not has_credentials(journal_url, container_uuid)
        denied = destroy(two, data)
        assert denied["message"] == "Bad authentication", denied
        assert live_containers_of(journal_url, "one") == []
        # Its takeover done, two removes one's lease row (Journal.unregister_front_end(name):
        # "the end of that takeover"); until then one may not register again.
        wait_for(
            lambda: query(journal_url, "SELECT taken_by FROM front_ends WHERE name = 'one'") == [],
            NOTIFY_BOUND,
            "the end of two's takeover of one (one's row gone from front_ends)",
        )

        # One again, on the same journal: nothing of its own to adopt or destroy.
        one = start_front_end(config_one)
        assert not re.search(r"adopted container|adopt container|destroying", one.log), one.log
        [(taken_by, expired)] = query(
            journal_url,
            "SELECT taken_by, lease_until < extract(epoch from now()) "
            "FROM front_ends WHERE name = 'one'",
        )
        assert taken_by is None and not expired, (taken_by, expired)
        again = create(one)
        assert entity(journal_url, "container", again["container_uuid"])["owner"] == "one"
        assert logs_in(again)
        assert destroy(one, again)["message"] == "OK"
        assert again["container_uuid"] not in qemu.list_marked()
    finally:
        stop_all(two, one)
