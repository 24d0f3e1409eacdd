"""The second libvirt host (tests/secondhost.py) works with the hypervisor layer as it is:
a real unprivileged libvirtd reached over the remote driver boots the dev image under
emulation, its QEMU forwards the host's own address (127.0.0.12) to the guest's SSH
server, and the domain is destroyed through the same connection."""

from __future__ import annotations

import time
import uuid

import pytest
from probes import refuses
from secondhost import second_host, second_host_daemon  # noqa: F401 - fixtures

from anweddol_actors.hypervisor import DomainSpec, Hypervisor, wait_for_ssh_banner
from anweddol_actors.image.builder import ensure_image

pytestmark = pytest.mark.vm

# QEMU's forwards on the second host: its own address, away from the other tests' ports.
FORWARD_PORTS = range(43000, 43500)
BOOT_TIMEOUT = 120.0


def test_second_host_boots_the_dev_image_and_forwards_its_address(second_host):  # noqa: F811
    iso = second_host.provide_iso(ensure_image())
    hypervisor = Hypervisor(second_host.uri)
    try:
        assert hypervisor.detect_domain_type() == "qemu"  # a session daemon offers no kvm
        spec = DomainSpec(
            uuid=str(uuid.uuid4()),
            memory_mib=256,
            vcpus=1,
            iso_path=iso,
            domain_type="qemu",
            forward_address=second_host.address,
            forward_port=FORWARD_PORTS.start,
            owner="test-second-host",
        )
        began = time.monotonic()
        handle = hypervisor.create_domain_on_free_port(spec, FORWARD_PORTS)
        try:
            assert hypervisor.list_marked(owner="test-second-host") == [handle.uuid]
            assert hypervisor.domain_info(handle.uuid).state == "running"
            # On the second host only: the system daemon does not see it.
            with Hypervisor("qemu:///system") as system:
                assert handle.uuid not in system.list_marked()
            address = hypervisor.guest_address(handle.spec)
            assert address == (second_host.address, handle.spec.forward_port)
            waited = wait_for_ssh_banner(*address, timeout=BOOT_TIMEOUT)
            # The forward binds the host's address only: not reachable on 127.0.0.1.
            assert refuses(handle.spec.forward_port)
            print(
                f"second host: daemon started in {second_host.seconds_to_start:.2f} s; "
                f"SSH banner on {address[0]}:{address[1]} {time.monotonic() - began:.1f} s "
                f"after createXML ({waited:.1f} s of waiting)"
            )
        finally:
            assert hypervisor.destroy_domain(handle.uuid) is True
        assert hypervisor.list_marked(owner="test-second-host") == []
    finally:
        hypervisor.close()
