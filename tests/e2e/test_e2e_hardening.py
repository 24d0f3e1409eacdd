"""Hostile guests and strangers, with real VMs: a guest that reboots or panics is a dead
container (reaped like a poweroff: port closed, credentials gone); strangers holding idle
connections to a forwarder cannot lock the owner out of the guest's SSH server; the guest's
host key seen at the endpoint login is the one the client meets and is kept in the journal.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import paramiko
import pytest
from probes import refuses, ssh_connect, ssh_run
from serverharness import record_events, wait_for
from test_e2e_containers import assert_nothing_left, client_for, event_names

from anweddol_actors.core import server as seed
from anweddol_actors.guest.shell import host_key_text
from anweddol_actors.hypervisor import Hypervisor, ensure_daemons
from anweddol_actors.image.builder import FILES, build_image

pytestmark = pytest.mark.vm


@pytest.fixture
def qemu():
    """Per test, opened once the test holds the VM lock: a connection held while waiting
    for it dies when a concurrent run's test restarts libvirtd."""
    ensure_daemons("qemu:///system")
    hypervisor = Hypervisor("qemu:///system")
    yield hypervisor
    hypervisor.close()


# The shipped setup script, plus a root loop that waits for the client to ask: the
# client's `touch ~/reboot-now` makes the guest reboot itself, `touch ~/crash-now` makes
# its kernel panic (the image boots with panic=-1: a panic reboots at once).
_TRIGGERS = """
( home=/home/$username
  while :; do
    [ -e "$home/reboot-now" ] && exec reboot -f
    [ -e "$home/crash-now" ] && echo c > /proc/sysrq-trigger
    sleep 1
  done ) </dev/null >/dev/null 2>&1 &
exit 0
"""


@pytest.fixture(scope="module")
def fragile_image(images) -> Path:
    script = (FILES / "anweddol_container_setup.sh").read_text()
    assert script.rstrip().endswith("exit 0")
    path = Path(images["folder"]) / "fragile-setup.sh"
    path.write_text(script.rstrip()[: -len("exit 0")] + _TRIGGERS)
    path.chmod(0o755)
    return build_image(Path(images["folder"]) / "fragile.iso", setup_script=path)


@pytest.mark.parametrize("how", ["reboot", "crash"])
def test_a_guest_that_reboots_or_panics_is_a_dead_container(
    make_vm_server, qemu, fragile_image, how
):
    running = make_vm_server(fragile_image)
    seen = record_events(running.server)
    created = client_for(running).create()
    assert created["success"] is True, created
    data = created["data"]
    port, uuid = data["container_listen_port"], data["container_uuid"]
    user, password = data["container_username"], data["container_password"]
    assert ssh_run(port, user, password, "id -un") == user
    seen.clear()
    try:
        ssh_run(port, user, password, f"touch ~/{how}-now; sleep 30")
    except (paramiko.SSHException, OSError, EOFError):
        pass  # the guest went down under the session: expected
    # With on_reboot/on_crash=destroy the domain is gone, not booting again unlocked.
    wait_for(lambda: running.engine.registry.count().get() == 0, 90, "reaper cleanup")
    wait_for(lambda: "on_container_domain_stopped" in event_names(seen), 10, "stop event")
    reaped = [(name, context) for name, context, _ in seen if name in event_names(seen)]
    assert reaped == [
        ("on_forwarder_stopped", seed.CONTEXT_AUTOMATIC_ACTION),
        ("on_container_domain_stopped", seed.CONTEXT_AUTOMATIC_ACTION),
    ]
    assert not qemu.is_active(uuid)
    assert refuses(port)
    assert not running.engine.journal.verify_credentials(uuid, data["client_token"])
    assert_nothing_left(running, qemu, uuid)


def _hold_idle(port: int, sources: list[str]) -> tuple[list[socket.socket], int]:
    """Idle connections from `sources`; returns them and how many reached the guest's SSH
    server (it greeted them with its banner) rather than being refused."""
    held, greeted = [], 0
    for source in sources:
        try:
            sock = socket.create_connection(
                ("127.0.0.1", port), timeout=30, source_address=(source, 0)
            )
        except ConnectionResetError:
            continue
        held.append(sock)
        try:
            banner = sock.recv(64)
        except (ConnectionResetError, TimeoutError):
            banner = b""
        greeted += banner.startswith(b"SSH-")
    return held, greeted


def _guest_host_key(port: int, user: str, password: str) -> str:
    ssh = ssh_connect(port, user, password)
    try:
        return host_key_text(ssh.get_transport().get_remote_server_key())
    finally:
        ssh.close()


STRANGERS = [f"127.0.0.{n}" for n in range(2, 10)]  # 8 addresses, none the owner's


def _owner_logs_in(port: int, user: str, password: str, attempts: int = 3) -> str:
    """``id -un`` over the owner's SSH login, tried a few times: with the strangers' 4
    held, the owner's is the guest's 5th unauthenticated connection from the one address
    it sees, so a connection made just before (the server's readiness probe) whose
    dropbear child has not exited yet can drop one attempt. A real lockout holds for as
    long as the strangers hold their connections: every attempt fails."""
    for attempt in range(attempts):
        try:
            return ssh_run(port, user, password, "id -un")
        except (paramiko.SSHException, EOFError, OSError):
            if attempt == attempts - 1:
                raise
            time.sleep(3)
    raise AssertionError("unreachable")


def test_strangers_holding_idle_connections_cannot_lock_the_owner_out(make_vm_server, qemu):
    running = make_vm_server(forward_max_connections=16, forward_max_connections_per_address=4)
    created = client_for(running).create()  # from 127.0.0.1: the owner
    assert created["success"] is True, created
    data = created["data"]
    port, user, password = (
        data["container_listen_port"],
        data["container_username"],
        data["container_password"],
    )
    held, greeted = _hold_idle(port, STRANGERS)
    try:
        # Strangers together got one address's allowance; the rest were refused.
        assert greeted == 4
        forwarder = running.engine.registry.get(data["container_uuid"]).get().forwarder
        assert forwarder.describe().get()["refused"] == len(STRANGERS) - 4
        # The owner still logs in: the guest's per-source limit (5) is not reached.
        assert _owner_logs_in(port, user, password) == user
        # The key the client meets is the one recorded at the endpoint login.
        recorded = running.engine.journal.host_key(data["container_uuid"])
        assert recorded == _guest_host_key(port, user, password)
    finally:
        for sock in held:
            sock.close()
    destroyed = client_for(running).destroy(data["container_uuid"], data["client_token"])
    assert destroyed["success"] is True, destroyed
    assert_nothing_left(running, qemu, data["container_uuid"])


def test_without_limits_idle_strangers_do_lock_the_owner_out(make_vm_server, qemu):
    # The other side of the test above, so that it can fail: the guest's SSH server really
    # turns the owner away once strangers hold its unauthenticated slots.
    running = make_vm_server(forward_max_connections=None, forward_max_connections_per_address=None)
    created = client_for(running).create()
    assert created["success"] is True, created
    data = created["data"]
    port = data["container_listen_port"]
    held, greeted = _hold_idle(port, STRANGERS)
    try:
        assert greeted >= 5
        with pytest.raises((paramiko.SSHException, OSError, EOFError)):
            ssh_run(port, data["container_username"], data["container_password"], "true")
    finally:
        for sock in held:
            sock.close()
    destroyed = client_for(running).destroy(data["container_uuid"], data["client_token"])
    assert destroyed["success"] is True, destroyed
    assert_nothing_left(running, qemu, data["container_uuid"])
