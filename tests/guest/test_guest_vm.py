"""Real guests: the dev image boots, the endpoint shell administers it, the client's user
logs in, endpoint is locked, domains vanish when destroyed or powered off, and each
injected failure surfaces as its own clear error."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import threading
import time

import paramiko
import pytest

from anweddol_actors.guest import (
    AdministrationError,
    EndpointAuthError,
    EndpointShell,
    generate_credentials,
)
from anweddol_actors.hypervisor import (
    DomainCreateError,
    ForwardPortInUse,
    wait_for_ssh_banner,
)
from anweddol_actors.image.builder import build_image

pytestmark = pytest.mark.vm

BOOT_TIMEOUT = 90.0


def _boot(domains, hypervisor, iso, **kwargs):
    handle = domains.start(iso, **kwargs)
    host, port = hypervisor.guest_address(handle.spec)
    wait_for_ssh_banner(host, port, timeout=BOOT_TIMEOUT)
    return handle, host, port


def _login(host, port, username, password) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        host,
        port=port,
        username=username,
        password=password,
        timeout=10,
        allow_agent=False,
        look_for_keys=False,
    )
    return client


def test_boot_administer_login_then_destroy(domains, hypervisor, dev_image):
    handle, host, port = _boot(domains, hypervisor, dev_image)
    assert host == "127.0.0.1"
    assert handle.uuid in hypervisor.list_marked()

    username, password = generate_credentials()
    with EndpointShell(host, port) as shell:
        assert shell.is_open
        out, err, status = shell.execute("id -un")
        assert (out.strip(), status) == ("endpoint", 0)
        shell.administer(username, password)

    client = _login(host, port, username, password)
    try:
        _stdin, stdout, _stderr = client.exec_command("id -un")
        assert stdout.read().decode().strip() == username
        assert stdout.channel.recv_exit_status() == 0
    finally:
        client.close()

    # The setup script locked endpoint: its password no longer works.
    with pytest.raises(EndpointAuthError):
        EndpointShell(host, port).open()

    assert hypervisor.destroy_domain(handle.uuid) is True
    assert not hypervisor.is_active(handle.uuid)
    assert handle.uuid not in hypervisor.list_marked()
    assert hypervisor.destroy_domain(handle.uuid) is False  # idempotent
    # QEMU is gone, so nothing listens on the forward port any more.
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=2).close()


def test_setup_script_refuses_reused_username(domains, hypervisor, dev_image):
    _handle, host, port = _boot(domains, hypervisor, dev_image)
    username, password = generate_credentials(20)
    with EndpointShell(host, port) as shell:
        shell.administer(username, password)
        # Same session, endpoint already locked for new logins: the user exists now.
        with pytest.raises(AdministrationError, match="already exists") as info:
            shell.administer(username, password)
        assert info.value.status == 1


def test_domain_has_the_spec_memory_and_vcpus(domains, hypervisor, dev_image):
    handle = domains.start(dev_image, memory_mib=320, vcpus=2)
    info = hypervisor.domain_info(handle.uuid)
    assert (info.memory_mib, info.vcpus, info.state) == (320, 2, "running")
    assert handle.name == f"anweddol-{handle.uuid}"


def test_guest_poweroff_is_reported_by_watch_stops(domains, hypervisor, dev_image):
    handle, _host, _port = _boot(domains, hypervisor, dev_image)
    stopped: list[str] = []
    seen = threading.Event()

    def on_stop(uuid: str) -> None:
        stopped.append(uuid)
        if uuid == handle.uuid:
            seen.set()

    hypervisor.watch_stops(on_stop)
    start = time.monotonic()
    hypervisor.shutdown_domain(handle.uuid)  # ACPI power button, guest powers off itself
    assert seen.wait(30), "no stop event within 30s of the ACPI shutdown"
    print(f"graceful shutdown took {time.monotonic() - start:.1f}s")
    assert not hypervisor.is_active(handle.uuid)
    assert handle.uuid not in hypervisor.list_marked()


def test_wrong_endpoint_password_in_image_is_an_auth_error(domains, hypervisor, image_dir):
    iso = build_image(image_dir / "wrong-endpoint-password.iso", endpoint_password="not-endpoint")
    _handle, host, port = _boot(domains, hypervisor, iso)
    with pytest.raises(EndpointAuthError, match="refused the credentials"):
        EndpointShell(host, port).open()


def test_failing_setup_script_is_an_administration_error(domains, hypervisor, image_dir, tmp_path):
    script = tmp_path / "setup.sh"
    # Speaks on stdout and succeeds for passwords starting with "Talk", fails otherwise:
    # both are failures for the server (the contract is silence and exit 0).
    script.write_text(
        "#!/bin/sh\n"
        'case "$2" in Talk*) echo "user created, probably"; exit 0;; esac\n'
        'echo "cannot create $1" >&2\n'
        "exit 3\n"
    )
    iso = build_image(image_dir / "failing-setup.iso", setup_script=script)
    _handle, host, port = _boot(domains, hypervisor, iso)
    with EndpointShell(host, port) as shell:
        with pytest.raises(AdministrationError, match="exit 3") as failed:
            shell.administer("user_12345", "abc123")
        assert failed.value.status == 3
        assert "cannot create user_12345" in failed.value.stderr
        with pytest.raises(AdministrationError, match="probably") as talked:
            shell.administer("user_12346", "Talk123")
        assert talked.value.status == 0


def test_unreadable_iso_is_a_create_error(domains, hypervisor, image_dir, dev_image, tmp_path):
    missing = image_dir / "does-not-exist.iso"
    # pytest's tmp_path sits under a 0700 folder: QEMU (libvirt-qemu) cannot traverse it.
    hidden = tmp_path / "hidden.iso"
    shutil.copyfile(dev_image, hidden)
    for iso in (missing, hidden):
        with pytest.raises(DomainCreateError) as info:
            domains.start(iso)
        assert info.value.reason == "iso_unreadable", str(info.value)
        assert str(iso) in str(info.value)
        assert not isinstance(info.value, ForwardPortInUse)
        assert info.value.uuid not in hypervisor.list_marked()


def test_taken_forward_port_is_classified_and_retried(domains, hypervisor, dev_image):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    try:
        spec = domains.spec(dev_image)
        spec = dataclasses.replace(spec, forward_port=taken)
        domains.uuids.append(spec.uuid)
        with pytest.raises(ForwardPortInUse) as info:
            hypervisor.create_domain(spec)
        assert info.value.port == taken
        assert info.value.reason == "port_in_use"
        assert not hypervisor.is_active(spec.uuid)

        # Whichever it tries first, the retry helper ends on the free port.
        free_probe = socket.socket()
        free_probe.bind(("127.0.0.1", 0))
        free = free_probe.getsockname()[1]
        free_probe.close()
        handle = hypervisor.create_domain_on_free_port(spec, [taken, free], attempts=2)
        assert handle.spec.forward_port == free
        assert hypervisor.is_active(spec.uuid)
    finally:
        blocker.close()
