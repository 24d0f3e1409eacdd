"""Handlers written for the original server, with real VMs: a handler that starts the
domain itself in ``on_container_created`` (as the original's own command-line server does),
and a handler that chooses the client's SSH credentials with ``storeClientSSHCredentials``.
"""

from __future__ import annotations

import secrets

import pytest
from probes import login_fails, ssh_run
from serverharness import record_events

from anweddol_actors.client import Client
from anweddol_actors.core import server as seed

pytestmark = pytest.mark.vm


def client_for(running) -> Client:
    return Client(*running.address, timeout=240)


def created_events(seen) -> list[str]:
    prefixes = ("on_container", "on_endpoint", "on_forwarder")
    return [name for name, _, _ in seen if name.startswith(prefixes)]


def test_handler_starts_the_domain_in_container_created(make_vm_server, qemu):
    running = make_vm_server()
    seen = record_events(running.server)
    started_by_handler = []

    @running.server.on_container_created
    def start_it(context, data):
        container = data["container_instance"]
        container.setMemory(288)  # as the original's CLI does: settings, then the start
        container.startDomain()
        started_by_handler.append((context, container.isDomainRunning()))

    created = client_for(running).create()
    assert created["success"] is True, created
    data = created["data"]
    assert started_by_handler == [(seed.CONTEXT_NORMAL_PROCESS, True)]
    assert qemu.domain_info(data["container_uuid"]).memory_mib == 288
    # The handler started it: the engine goes on without a second start (and, as in the
    # original, without on_container_domain_started, which stands for its own start).
    assert created_events(seen)[:2] == ["on_endpoint_shell_created", "on_endpoint_shell_opened"]
    who = ssh_run(
        data["container_listen_port"],
        data["container_username"],
        data["container_password"],
        "id -un",
    )
    assert who == data["container_username"]
    # One start, journalled through the container's machine, in the CREATE's context.
    rows = running.engine.journal.history(entity_id=data["container_uuid"])
    assert [row["trigger"] for row in rows] == ["create", "start", "administer", "serve"]
    start = rows[1]
    assert start["context"] == seed.CONTEXT_NORMAL_PROCESS
    assert client_for(running).destroy(data["container_uuid"], data["client_token"])["success"]


@pytest.mark.parametrize("event", ["on_endpoint_shell_created", "on_endpoint_shell_opened"])
def test_credentials_stored_by_a_handler_are_kept(make_vm_server, qemu, event):
    running = make_vm_server()
    username = "user_42424"  # the protocol's form: ^user_[0-9]{5}$
    password = "H" + secrets.token_hex(12)

    def choose(context, data):
        data["endpoint_shell_instance"].storeClientSSHCredentials(username, password)

    running.server.setEventHandler(event, choose)
    created = client_for(running).create()
    assert created["success"] is True, created
    data = created["data"]
    assert (data["container_username"], data["container_password"]) == (username, password)
    port = data["container_listen_port"]
    assert ssh_run(port, username, password, "id -un") == username
    assert login_fails(port, username, "wrong" + password)
    assert client_for(running).destroy(data["container_uuid"], data["client_token"])["success"]


@pytest.mark.parametrize("then_close", [False, True])
def test_a_handler_that_administers_the_guest_itself(make_vm_server, qemu, then_close):
    """The seed's way to set custom credentials: store them, then administer, in
    ``on_endpoint_shell_opened``; the engine must not run the setup script a second time
    (it refuses a user that exists) and must send the handler's credentials. A handler that
    closes the shell after is obeyed too, as the original does."""
    running = make_vm_server()
    username = "user_31337"
    password = "A" + secrets.token_hex(16)

    @running.server.on_endpoint_shell_opened
    def administer(context, data):
        shell = data["endpoint_shell_instance"]
        shell.storeClientSSHCredentials(username, password)
        shell.administrateContainer()
        if then_close:
            shell.closeShell()

    created = client_for(running).create()
    assert created["success"] is True, created
    data = created["data"]
    assert (data["container_username"], data["container_password"]) == (username, password)
    assert ssh_run(data["container_listen_port"], username, password, "id -un") == username
    rows = running.engine.journal.history(entity_id=data["container_uuid"] + ".shell")
    assert [row["trigger"] for row in rows] == ["create", "open", "close", "destroy"]
    assert client_for(running).destroy(data["container_uuid"], data["client_token"])["success"]
