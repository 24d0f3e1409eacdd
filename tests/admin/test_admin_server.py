"""The admin channel over a real Unix socket beside a real server (libvirt's test driver):
what each command answers, who may ask, what a bad request gets, and that nothing is left
once it closes."""

from __future__ import annotations

import json
import logging
import os
import pwd
import socket
import stat
import subprocess
import tempfile
import threading

import pytest
from serverharness import record_events, serve_stand_in

from anweddol_actors import __version__
from anweddol_actors.admin import server as admin_server
from anweddol_actors.admin.client import AdminError, ask
from anweddol_actors.admin.server import MAX_CONNECTIONS, MAX_REQUEST_SIZE, AdminServer
from anweddol_actors.lifecycle.events import (
    CONTEXT_DEFERRED_CALL,
    EVENT_CONTAINER_DOMAIN_STOPPED,
    EVENT_FORWARDER_STOPPED,
)
from anweddol_actors.protocol.crypto import fingerprint


def raw(path, payload: bytes, timeout: float = 10.0) -> dict:
    """Send ``payload`` as is; the server's answer, parsed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return json.loads(answer)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_status_fields(running, socket_path, rsa):
    extra = {"configuration": "test"}
    with AdminServer(running.engine, str(socket_path), status=lambda: extra):
        data = ask(str(socket_path), "status")
    assert data["version"] == __version__
    assert data["pid"] == os.getpid()
    assert isinstance(data["uptime"], int) and data["uptime"] >= 0
    assert data["containers"] == 0
    assert data["available"] == 4
    assert data["listen"] == f"127.0.0.1:{running.address[1]}"
    assert data["fingerprint"] == fingerprint(rsa.private_key)
    assert data["configuration"] == "test"


def test_list_is_empty_without_containers(admin, socket_path):
    assert ask(str(socket_path), "list") == {"containers": []}


def test_destroy_of_an_unknown_uuid_is_refused(admin, socket_path):
    with pytest.raises(AdminError, match="no live container 1234"):
        ask(str(socket_path), "destroy", uuid="1234")


def test_modes_of_socket_and_folder(admin, socket_path):
    assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(socket_path.parent).st_mode) == 0o750


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"this is not json\n", "bad request: not a JSON line"),
        (b"", "bad request: not a JSON line"),
        (b"[1, 2]\n", "bad request: no command"),
        (
            b'{"command": "reboot"}\n',
            "unknown command 'reboot' (known: destroy, drain, enable, front_ends, hosts, list, "
            "status)",
        ),
        (b'{"command": "destroy"}\n', "destroy: the argument 'uuid' is required"),
        (b'{"command": "destroy", "uuid": 7}\n', "destroy: the argument 'uuid' is required"),
        (b"{" + b" " * MAX_REQUEST_SIZE + b"}\n", f"larger than {MAX_REQUEST_SIZE} bytes"),
    ],
)
def test_bad_requests_get_one_line(admin, socket_path, payload, error):
    reply = raw(socket_path, payload)
    assert reply["ok"] is False
    assert error in reply["error"] and "\n" not in reply["error"]
    # The channel still serves.
    assert ask(str(socket_path), "list") == {"containers": []}


def test_a_silent_peer_is_cut(admin, socket_path, monkeypatch):
    monkeypatch.setattr(admin_server, "READ_TIMEOUT", 0.3)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(socket_path))
        reply = json.loads(sock.recv(65536))
    assert reply == {"ok": False, "error": "bad request: not sent in time"}


def test_connections_past_the_cap_are_told_busy(admin, socket_path):
    silent = []
    try:
        for _ in range(MAX_CONNECTIONS):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(socket_path))
            silent.append(sock)
        # Each is served on its own thread once accepted: wait until all are.
        deadline = threading.Event()
        for _ in range(200):
            with admin._lock:
                if len(admin._workers) == MAX_CONNECTIONS:
                    break
            deadline.wait(0.02)
        with pytest.raises(AdminError, match="busy"):
            ask(str(socket_path), "list")
    finally:
        for sock in silent:
            sock.close()
    # Once they are gone the channel serves again.
    for _ in range(200):
        try:
            assert ask(str(socket_path), "list") == {"containers": []}
            break
        except AdminError:
            threading.Event().wait(0.05)
    else:
        pytest.fail("the channel did not serve again")


def test_nothing_is_left_after_close(running, socket_path):
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    channel = AdminServer(running.engine, str(socket_path)).start()
    ask(str(socket_path), "status")
    ask(str(socket_path), "list")
    raw(socket_path, b"not json\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:  # a peer still there
        sock.connect(str(socket_path))
        channel.close()
    assert not socket_path.exists()
    assert set(threading.enumerate()) <= threads_before
    assert open_fds() <= fds_before
    channel.close()  # a second close does nothing


def test_a_stale_socket_file_is_replaced(running, socket_path):
    socket_path.parent.mkdir(mode=0o750)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(socket_path))  # what a killed server leaves: a file nobody listens on
    assert stat.S_ISSOCK(os.lstat(socket_path).st_mode)
    with AdminServer(running.engine, str(socket_path)):
        assert ask(str(socket_path), "list") == {"containers": []}


def test_a_live_socket_is_not_taken_over(admin, running, socket_path):
    with pytest.raises(AdminError, match="another server answers there") as caught:
        AdminServer(running.engine, str(socket_path)).start()
    assert "\n" not in str(caught.value)
    assert ask(str(socket_path), "list") == {"containers": []}  # the first one still serves


def test_a_file_that_is_not_a_socket_is_left_alone(running, socket_path):
    socket_path.parent.mkdir()
    socket_path.write_text("keep me")
    with pytest.raises(AdminError, match="is not a socket"):
        AdminServer(running.engine, str(socket_path)).start()
    assert socket_path.read_text() == "keep me"


def test_an_unknown_owner_is_one_line(running, socket_path):
    with pytest.raises(AdminError, match="no user 'no-such-user-here'"):
        AdminServer(running.engine, str(socket_path), owner="no-such-user-here").start()


# -- who may ask --------------------------------------------------------------------------

NOBODY_ASKS = """
import json, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(10)
try:
    sock.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
    raise SystemExit(0)
sock.sendall(b'{"command": "list"}\\n')
print(sock.recv(65536).decode().strip())
"""


@pytest.fixture
def shared_folder():
    """A folder every user can traverse (tmp_path's parents are root's alone)."""
    folder = tempfile.mkdtemp(prefix="anweddol-admin-test-", dir="/tmp")
    os.chmod(folder, 0o755)
    yield folder
    subprocess.run(["rm", "-rf", folder], check=True)


def as_nobody(path: str) -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a peer as another user")
    nobody = pwd.getpwnam("nobody")
    result = subprocess.run(
        ["/usr/bin/python3", "-c", NOBODY_ASKS, path],
        capture_output=True,
        text=True,
        timeout=30,
        user=nobody.pw_uid,
        group=nobody.pw_gid,
        extra_groups=[],
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_another_user_cannot_open_the_socket(running, shared_folder):
    path = os.path.join(shared_folder, "run", "admin.sock")
    with AdminServer(running.engine, path):
        assert as_nobody(path) == "EACCES"


def test_another_user_is_refused_even_when_the_modes_allow_it(running, shared_folder, caplog):
    path = os.path.join(shared_folder, "run", "admin.sock")
    with AdminServer(running.engine, path):
        # An administrator widened the modes: the peer's uid is still checked.
        os.chmod(os.path.dirname(path), 0o755)
        os.chmod(path, 0o666)
        with caplog.at_level(logging.WARNING, logger="anweddol_actors.admin.server"):
            reply = json.loads(as_nobody(path))
    assert reply == {"ok": False, "error": "permission denied"}
    uid = pwd.getpwnam("nobody").pw_uid
    assert any(f"refused a request of uid {uid}" in r.getMessage() for r in caplog.records)


# -- a live container ---------------------------------------------------------------------


def test_list_and_destroy_a_live_container(running, admin, socket_path):
    engine = running.engine
    events = record_events(running.server)
    container_uuid, token = serve_stand_in(engine, client_ip="127.0.0.9")
    [row] = ask(str(socket_path), "list")["containers"]
    port = engine.context.registry.get(container_uuid).get().forwarder.port.get()
    assert row["uuid"] == container_uuid
    assert row["state"] == "started_serving"
    assert row["client"] == "127.0.0.9"
    assert row["port"] == port
    assert isinstance(row["age"], int)
    assert row["expires_at"] is None and row["expires_in"] is None  # no limit set
    assert ask(str(socket_path), "status")["containers"] == 1

    assert ask(str(socket_path), "destroy", uuid=container_uuid) == {"uuid": container_uuid}

    journal = engine.journal
    assert not journal.verify_credentials(container_uuid, token)
    assert engine.registry.get(container_uuid).get() is None
    assert engine.registry.available().get() == 4  # the slot is free
    assert container_uuid not in engine.context.hypervisors.get().list_marked()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # the forwarder's port is closed
    stopped = {event: context for event, context, _ in events}
    assert stopped[EVENT_FORWARDER_STOPPED] == CONTEXT_DEFERRED_CALL
    assert stopped[EVENT_CONTAINER_DOMAIN_STOPPED] == CONTEXT_DEFERRED_CALL
    stops = [
        row
        for entity in (container_uuid, f"{container_uuid}.forwarder")
        for row in journal.history(entity_id=entity)
        if row["trigger"] == "stop"
    ]
    assert len(stops) == 2
    assert all(row["context"] == CONTEXT_DEFERRED_CALL for row in stops)
    assert all(row["details"]["reason"] == "asked by the administrator" for row in stops)
    assert ask(str(socket_path), "list") == {"containers": []}
    with pytest.raises(AdminError, match="no live container"):
        ask(str(socket_path), "destroy", uuid=container_uuid)


def test_expiry_is_the_reapers(running, admin, socket_path):
    settings = running.engine.settings
    settings.max_lifetime = 3600.0
    settings.max_idle_time = 600.0
    container_uuid, _ = serve_stand_in(running.engine)
    [row] = ask(str(socket_path), "list")["containers"]
    # Nobody connected through the forwarder: the idle limit comes first.
    assert 0 < row["expires_in"] <= 600
    assert row["expires_at"].endswith("+00:00")
    ask(str(socket_path), "destroy", uuid=container_uuid)
