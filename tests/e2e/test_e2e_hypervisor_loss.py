"""Hypervisor loss with real guests and a real libvirtd stopped and restarted.

During the outage CREATE and DESTROY answer ``Unavailable (hypervisor unreachable)`` and
the credentials keep working; after it a CREATE works, the DESTROY refused earlier works,
and a guest poweroff is still noticed (the stop events were registered again). Whatever
failed, SIGTERM ends ``serve`` in bounded time, and a teardown cut by the outage is
finished by the next start. libvirtd runs again at the end of every test (tests/libvirtd.py).
"""

from __future__ import annotations

import pytest
from libvirtd import RECONNECT_BOUND, libvirtd_stopped, restart_libvirtd
from probes import ssh_run
from serveprocess import ServeProcess, write_config
from serverharness import wait_for

from anweddol_actors.client import Client

pytestmark = pytest.mark.vm

UNAVAILABLE = "Unavailable (hypervisor unreachable)"
# SIGTERM to exit: sessions get at most ~11 s, each teardown a few libvirt calls, closing
# the connection ~11 s at worst. Generous for a loaded 2-core machine, still a bound.
EXIT_BOUND = 90


def test_outage_then_back_with_real_guests(make_vm_server, qemu):
    # No polling to speak of: only libvirt's stop event can notice the poweroff in time.
    running = make_vm_server(reaper_poll_interval=3600, max_idle_time=None)
    context = running.engine.context
    client = Client(*running.address, timeout=240)
    first = client.create()
    assert first["success"] is True, first
    a = first["data"]

    with libvirtd_stopped():
        wait_for(lambda: not context.hypervisors.reachable(), 10, "outage noticed")
        assert client.create()["message"] == UNAVAILABLE
        refused = client.destroy(a["container_uuid"], a["client_token"])
        assert (refused["success"], refused["message"]) == (False, UNAVAILABLE)
        assert context.journal.verify_credentials(a["container_uuid"], a["client_token"])
        assert client.stat()["success"] is True
        assert running.engine.registry.get(a["container_uuid"]).get() is not None

    wait_for(context.hypervisors.reachable, RECONNECT_BOUND, "server reconnected")
    wait_for(lambda: qemu.connected, RECONNECT_BOUND, "test connection reconnected")
    # The guest ran on without libvirtd: its user still logs in.
    assert (
        ssh_run(
            a["container_listen_port"], a["container_username"], a["container_password"], "id -un"
        )
        == a["container_username"]
    )
    second = client.create()
    assert second["success"] is True, second
    b = second["data"]
    assert (
        ssh_run(
            b["container_listen_port"], b["container_username"], b["container_password"], "id -un"
        )
        == b["container_username"]
    )

    # The DESTROY refused during the outage works now.
    assert client.destroy(a["container_uuid"], a["client_token"])["message"] == "OK"
    assert a["container_uuid"] not in qemu.list_marked()

    # A poweroff after the restart is noticed by the re-registered stop event and reaped.
    qemu.shutdown_domain(b["container_uuid"])  # ACPI: the guest powers itself off
    wait_for(lambda: running.engine.registry.count().get() == 0, 90, "poweroff reaped")
    assert not context.journal.verify_credentials(b["container_uuid"], b["client_token"])
    assert b["container_uuid"] not in qemu.list_marked()


def test_sigterm_after_a_libvirtd_restart(tmp_path, images, qemu):
    config = write_config(tmp_path, images["dev"], "destroy")
    serve = ServeProcess(config)
    made = None
    try:
        restart_libvirtd()
        # At once: answered Unavailable while reconnecting, or served once reconnected.
        created = serve.client().create()
        assert created["success"] or created["message"] == UNAVAILABLE, created
        if created["success"]:
            made = created["data"]["container_uuid"]
        serve.stop(EXIT_BOUND)
        assert serve.process.returncode == 0, serve.log
        assert "still alive" not in serve.log, serve.log
    finally:
        serve.kill()
    wait_for(lambda: qemu.connected, RECONNECT_BOUND, "test connection reconnected")
    if made is not None:
        assert made not in qemu.list_marked()


def test_sigterm_during_an_outage_then_the_next_start_cleans_up(tmp_path, images, qemu):
    """The stop meets the outage: it cannot destroy the domain, still exits in bounded
    time, and the next start (libvirt back) destroys what was left."""
    config = write_config(tmp_path, images["dev"], "destroy")
    serve = ServeProcess(config)
    created = serve.client().create()
    assert created["success"] is True, created
    container_uuid = created["data"]["container_uuid"]
    try:
        with libvirtd_stopped():
            # The close callback may take a moment to run; SIGTERM goes in regardless.
            serve.stop(EXIT_BOUND)
            assert serve.process.returncode == 0, serve.log
            assert "left to the next start" in serve.log, serve.log
            assert "ContainerActor still alive" not in serve.log, serve.log
    finally:
        serve.kill()
    wait_for(lambda: qemu.connected, RECONNECT_BOUND, "test connection reconnected")
    assert container_uuid in qemu.list_marked()  # the guest outlived libvirtd and the server
    again = ServeProcess(config)
    try:
        assert container_uuid not in qemu.list_marked()  # the start's recovery destroyed it
        denied = again.client().destroy(container_uuid, created["data"]["client_token"])
        assert denied["message"] == "Bad authentication"
        again.stop(EXIT_BOUND)
        assert again.process.returncode == 0, again.log
    finally:
        again.kill()
