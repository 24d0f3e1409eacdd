"""The domain XML: the reference spec's content, the fast-boot settings, the marker."""

from __future__ import annotations

import uuid as uuid_module
import xml.etree.ElementTree as ET

import pytest

from anweddol_actors.hypervisor.domain_xml import (
    MARKER_NAMESPACE,
    QEMU_NAMESPACE,
    DomainSpec,
    marker_uuid,
    render_domain_xml,
)

UUID = "3f1c2b9e-8d7a-4c6b-9e5f-0a1b2c3d4e5f"


def _spec(**overrides) -> DomainSpec:
    values = dict(
        uuid=UUID,
        memory_mib=512,
        vcpus=2,
        iso_path="/srv/iso/c.iso",
        domain_type="qemu",
        network="user",
        forward_port=20022,
    )
    values.update(overrides)
    return DomainSpec(**values)


def _parse(spec: DomainSpec) -> ET.Element:
    return ET.fromstring(render_domain_xml(spec))


def test_user_mode_domain_has_spec_values_and_fast_settings():
    root = _parse(_spec(console_log="/var/log/c.log"))
    assert root.get("type") == "qemu"
    assert root.findtext("name") == f"anweddol-{UUID}"
    assert root.findtext("uuid") == UUID
    assert root.find("memory").text == "512" and root.find("memory").get("unit") == "MiB"
    assert root.findtext("currentMemory") == "512"
    assert root.findtext("vcpu") == "2"
    assert root.find("os/type").get("machine") == "q35"
    assert root.find("os/boot").get("dev") == "cdrom"
    assert root.findtext("on_poweroff") == "destroy"
    cpu = root.find("cpu")
    assert cpu.findtext("model") == "qemu64"
    assert cpu.find("feature").attrib == {"policy": "require", "name": "rdrand"}
    disk = root.find("devices/disk")
    assert disk.get("device") == "cdrom"
    assert disk.find("source").get("file") == "/srv/iso/c.iso"
    assert disk.find("target").get("bus") == "sata"
    assert root.find("devices/memballoon").get("model") == "none"
    assert root.find("devices/video/model").get("type") == "none"
    assert root.find("devices/serial/source").get("path") == "/var/log/c.log"
    # No libvirt interface at all: QEMU's own user networking is the only NIC.
    assert root.find("devices/interface") is None
    args = [a.get("value") for a in root.findall(f"{{{QEMU_NAMESPACE}}}commandline/*")]
    assert args[0] == "-netdev" and args[2] == "-device"
    netdev = args[1].split(",")
    assert "restrict=on" in netdev
    assert "hostfwd=tcp:127.0.0.1:20022-:22" in netdev
    assert args[3] == "virtio-net-pci,netdev=anwnet0,romfile="


def test_nat_mode_domain_uses_the_bridge_and_no_commandline():
    root = _parse(_spec(network="nat", forward_port=None, nat_interface_name="virbr7"))
    interface = root.find("devices/interface")
    assert interface.get("type") == "bridge"
    assert interface.find("source").get("bridge") == "virbr7"
    assert interface.find("model").get("type") == "virtio"
    assert root.find(f"{{{QEMU_NAMESPACE}}}commandline") is None
    assert "hostfwd" not in render_domain_xml(_spec(network="nat", forward_port=None))


def test_kvm_domain_passes_the_host_cpu_through():
    root = _parse(_spec(domain_type="kvm"))
    assert root.get("type") == "kvm"
    assert root.find("cpu").get("mode") == "host-passthrough"


def test_marker_is_in_our_namespace_and_readable_back():
    root = _parse(_spec())
    marker = root.find(f"metadata/{{{MARKER_NAMESPACE}}}container")
    assert marker is not None
    assert marker.findtext(f"{{{MARKER_NAMESPACE}}}uuid") == UUID
    assert marker_uuid(ET.tostring(marker, encoding="unicode")) == UUID
    # libvirt hands the element back without its namespace.
    assert marker_uuid(f"<container><uuid>{UUID}</uuid></container>") == UUID
    assert marker_uuid("<other><uuid>x</uuid></other>") is None
    assert marker_uuid("not xml") is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"uuid": "not-a-uuid"}, "badly formed"),
        ({"memory_mib": 8}, "memory_mib"),
        ({"vcpus": 0}, "vcpus"),
        ({"domain_type": "xen"}, "domain_type"),
        ({"network": "bridge"}, "network"),
        ({"forward_port": None}, "forward_port"),
        ({"forward_port": 70000}, "forward_port"),
        ({"network": "nat", "nat_interface_name": ""}, "nat_interface_name"),
    ],
)
def test_bad_specs_are_refused_before_libvirt(overrides, message):
    with pytest.raises(ValueError, match=message):
        _spec(**overrides)


def test_uuid_is_normalised():
    upper = str(uuid_module.UUID(UUID)).upper()
    assert _spec(uuid=upper).uuid == UUID


@pytest.mark.parametrize("network", ["user", "nat"])
def test_reboot_and_crash_destroy_the_domain(network):
    # A live ISO that reboots comes back with `endpoint` unlocked: the domain must end
    # instead, so no guest ever runs a second boot behind a client's port.
    root = _parse(_spec(network=network))
    assert {tag: root.findtext(tag) for tag in ("on_poweroff", "on_reboot", "on_crash")} == {
        "on_poweroff": "destroy",
        "on_reboot": "destroy",
        "on_crash": "destroy",
    }
