"""Servers with several hypervisor hosts for the fast tests: each host is its own instance
of libvirt's test driver (``test:///ABSOLUTE/PATH.xml`` opens a private, empty driver per
connection, unlike ``test:///default``, which all connections share), and the guests'
forwarded SSH port is a loopback SSH server standing in for every guest."""

from __future__ import annotations

import socket
from pathlib import Path

from serverharness import RunningServer, stand_in_server

from anweddol_actors.core.crypto import RSAWrapper
from anweddol_actors.engine.settings import HostSettings

# A test-driver node with no domains (the driver's defaults otherwise: one CPU, 8 GiB).
NODE_XML = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>
    <active>2</active><mhz>2000</mhz><model>i686</model></cpu>
  <memory>8388608</memory>
</node>
"""


def node_host(folder: Path, name: str, max_containers: int | None = 1) -> HostSettings:
    """A host on a test-driver instance of its own (an empty node file in ``folder``)."""
    node = folder / f"{name}.xml"
    node.write_text(NODE_XML)
    return HostSettings(name=name, libvirt_uri=f"test://{node}", max_containers=max_containers)


def free_range(size: int = 20) -> tuple[int, int]:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        base = probe.getsockname()[1]
    return (base, min(65535, base + size))


def hosts_server(
    rsa: RSAWrapper, folder: Path, guest_port: int, hosts: tuple[HostSettings, ...], **overrides
) -> RunningServer:
    """A server (not started) on ``hosts``, its journal a SQLite file in ``folder``, whose
    guests all "forward" to ``guest_port`` (a loopback SSH stand-in)."""
    settings = {
        "hosts": hosts,
        "guest_port_range": (guest_port, guest_port),
        "ready_timeout": 10.0,
        "database": str(folder / "journal.sqlite3"),
        **overrides,
    }
    return stand_in_server(rsa, folder, free_range(), **settings)


def marked_domains(running: RunningServer) -> dict[str, list[str]]:
    """Per reachable host, the domains of this server that its libvirt holds."""
    engine = running.engine
    return {
        host.name: host.link.get().list_marked(owner=engine.owner)
        for host in engine.context.hosts
        if host.link.reachable()
    }
