"""The container domain: its specification and its libvirt XML.

The XML follows reference/specs/virtualization.md (cdrom boot of the container ISO, memory,
vcpus, NAT bridge) with the settings measured in IMAGE-NOTES.md to boot fast under
emulation: q35 with the CD on SATA, qemu64 + rdrand, no balloon, no video, no NIC boot ROM,
serial console to a file. ``user`` networking is QEMU's own, passed through
``<qemu:commandline>`` because Debian 12's libvirt has neither passt nor port forwarding for
``<interface type='user'>``. No libvirt import here: this module is plain data.
"""

from __future__ import annotations

import uuid as uuid_module
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

DOMAIN_NAME_PREFIX = "anweddol-"
MARKER_NAMESPACE = "https://github.com/the-anweddol-project/anweddol_actors/domain/1.0"
MARKER_PREFIX = "anweddol"
QEMU_NAMESPACE = "http://libvirt.org/schemas/domain/qemu/1.0"

NETWORK_MODES = ("user", "nat")
DOMAIN_TYPES = ("kvm", "qemu", "test")
DEFAULT_NAT_INTERFACE_NAME = "virbr0"

# The user-mode subnet lives inside the QEMU process only (link-local, never routed).
USER_NET = "169.254.77.0/24"
USER_NET_HOST = "169.254.77.2"
USER_NET_DHCP_START = "169.254.77.15"
GUEST_SSH_PORT = 22
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class DomainSpec:
    """Everything needed to start one container domain."""

    uuid: str
    memory_mib: int
    vcpus: int
    iso_path: Path
    domain_type: str = "qemu"
    network: str = "user"
    forward_port: int | None = None
    # Where QEMU's user-mode forward listens on the host: loopback for a local host; a
    # remote host's own address, reached by the front end only (docs/scaling.md).
    forward_address: str = LOOPBACK
    nat_interface_name: str = DEFAULT_NAT_INTERFACE_NAME
    console_log: Path | None = None
    # Which server (journal) owns the domain: a restarted server cleans up only its own
    # orphans, never another server's domains on the same host.
    owner: str | None = None

    def __post_init__(self) -> None:
        # Normalise and validate early: a bad spec must fail before libvirt is involved.
        object.__setattr__(self, "uuid", str(uuid_module.UUID(str(self.uuid))))
        object.__setattr__(self, "iso_path", Path(self.iso_path))
        if self.console_log is not None:
            object.__setattr__(self, "console_log", Path(self.console_log))
        if self.memory_mib < 16:
            raise ValueError(f"memory_mib too small: {self.memory_mib}")
        if self.vcpus < 1:
            raise ValueError(f"vcpus must be >= 1: {self.vcpus}")
        if self.domain_type not in DOMAIN_TYPES:
            raise ValueError(f"domain_type must be one of {DOMAIN_TYPES}: {self.domain_type!r}")
        if self.network not in NETWORK_MODES:
            raise ValueError(f"network must be one of {NETWORK_MODES}: {self.network!r}")
        if self.network == "user":
            if self.forward_port is None or not 1 <= self.forward_port <= 65535:
                raise ValueError(f"user networking needs a forward_port: {self.forward_port!r}")
        elif not self.nat_interface_name:
            raise ValueError("nat networking needs a nat_interface_name")

    @property
    def name(self) -> str:
        return domain_name(self.uuid)


def domain_name(uuid: str) -> str:
    return f"{DOMAIN_NAME_PREFIX}{uuid}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def user_netdev_arg(
    forward_port: int, netdev_id: str = "anwnet0", forward_address: str = LOOPBACK
) -> str:
    """QEMU ``-netdev`` value: restricted user networking, SSH forwarded from
    ``forward_address`` only (loopback unless the host is reached from a front end)."""
    return (
        f"user,id={netdev_id},restrict=on,ipv6=off,net={USER_NET},host={USER_NET_HOST},"
        f"dhcpstart={USER_NET_DHCP_START},"
        f"hostfwd=tcp:{forward_address}:{forward_port}-:{GUEST_SSH_PORT}"
    )


def render_domain_xml(spec: DomainSpec) -> str:
    """The libvirt domain XML for ``spec`` (a transient domain for ``createXML``)."""
    ET.register_namespace("qemu", QEMU_NAMESPACE)
    ET.register_namespace(MARKER_PREFIX, MARKER_NAMESPACE)
    domain = ET.Element("domain", {"type": spec.domain_type})
    _sub(domain, "name", spec.name)
    _sub(domain, "uuid", spec.uuid)
    metadata = _sub(domain, "metadata")
    marker = _sub(metadata, f"{{{MARKER_NAMESPACE}}}container")
    _sub(marker, f"{{{MARKER_NAMESPACE}}}uuid", spec.uuid)
    _sub(marker, f"{{{MARKER_NAMESPACE}}}network", spec.network)
    if spec.owner:
        _sub(marker, f"{{{MARKER_NAMESPACE}}}owner", spec.owner)
    _sub(domain, "memory", str(spec.memory_mib), unit="MiB")
    _sub(domain, "currentMemory", str(spec.memory_mib), unit="MiB")
    _sub(domain, "vcpu", str(spec.vcpus), placement="static")

    os_el = _sub(domain, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="q35")
    _sub(os_el, "boot", dev="cdrom")

    features = _sub(domain, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    _sub(features, "vmport", state="off")
    _sub(features, "vmcoreinfo", state="off")

    if spec.domain_type == "kvm":
        _sub(domain, "cpu", mode="host-passthrough", check="none")
    elif spec.domain_type == "qemu":
        # Without rdrand the guest waits about a second for entropy before its host key.
        cpu = _sub(domain, "cpu", mode="custom", match="exact", check="none")
        _sub(cpu, "model", "qemu64", fallback="forbid")
        _sub(cpu, "feature", policy="require", name="rdrand")

    clock = _sub(domain, "clock", offset="utc")
    _sub(clock, "timer", name="rtc", tickpolicy="catchup")
    _sub(clock, "timer", name="pit", tickpolicy="delay")
    _sub(clock, "timer", name="hpet", present="no")

    # A guest that powers itself off is gone: nothing to keep for a transient domain. A
    # reboot or a crash ends it too: a live ISO comes back with the `endpoint` account
    # unlocked (the lock lives in RAM), behind a port anyone may reach. libvirt then
    # reports the domain stopped, and the reaper ends the container like a poweroff.
    _sub(domain, "on_poweroff", "destroy")
    _sub(domain, "on_reboot", "destroy")
    _sub(domain, "on_crash", "destroy")

    devices = _sub(domain, "devices")
    disk = _sub(devices, "disk", type="file", device="cdrom")
    _sub(disk, "driver", name="qemu", type="raw")
    _sub(disk, "source", file=str(spec.iso_path))
    _sub(disk, "target", dev="sda", bus="sata")
    _sub(disk, "readonly")

    if spec.network == "nat":
        interface = _sub(devices, "interface", type="bridge")
        _sub(interface, "source", bridge=spec.nat_interface_name)
        _sub(interface, "model", type="virtio")
        _sub(interface, "rom", enabled="no")

    if spec.console_log is not None:
        serial = _sub(devices, "serial", type="file")
        _sub(serial, "source", path=str(spec.console_log))
        _sub(serial, "target", port="0")
    _sub(devices, "controller", type="usb", model="none")
    video = _sub(devices, "video")
    _sub(video, "model", type="none")
    _sub(devices, "memballoon", model="none")

    if spec.network == "user":
        assert spec.forward_port is not None
        commandline = _sub(domain, f"{{{QEMU_NAMESPACE}}}commandline")
        for value in (
            "-netdev",
            user_netdev_arg(spec.forward_port, forward_address=spec.forward_address),
            "-device",
            "virtio-net-pci,netdev=anwnet0,romfile=",
        ):
            _sub(commandline, f"{{{QEMU_NAMESPACE}}}arg", value=value)

    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def marker_owner(metadata_xml: str) -> str | None:
    """The owner recorded in our metadata element, if any."""
    try:
        root = ET.fromstring(metadata_xml)
    except ET.ParseError:
        return None
    for child in root:
        if _local(child.tag) == "owner" and child.text:
            return child.text.strip()
    return None


def marker_uuid(metadata_xml: str) -> str | None:
    """The container UUID in our metadata element, or None if it is not one of ours.

    libvirt returns the element it filed under our namespace URI without the namespace
    (``<container><uuid>..``), so local names are compared.
    """
    try:
        root = ET.fromstring(metadata_xml)
    except ET.ParseError:
        return None
    if _local(root.tag) != "container":
        return None
    for child in root:
        if _local(child.tag) == "uuid" and child.text and child.text.strip():
            return child.text.strip()
    return None
