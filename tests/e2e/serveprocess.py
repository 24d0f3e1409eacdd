"""`python -m anweddol_actors serve` as a child process, for the tests that kill it: a
:class:`commands.ServeChild` (its standard error drained into ``lines``, ``wait_for_line``)
that waits until the server listens. The child runs the code of this checkout whatever the
current directory.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path

from commands import ServeChild

from anweddol_actors.client import Client

# Loopback ports for the forwarders: the e2e range (tests/e2e/conftest.py).
FORWARDER_PORTS = (41000, 41999)


def write_config(
    folder: Path,
    iso: str | Path,
    mode: str = "destroy",
    ports: tuple[int, int] = FORWARDER_PORTS,
    warm_pool_size: int | None = 0,
    container: dict[str, object] | None = None,
    sections: str = "",
    address: str = "127.0.0.1",
    database: str | None = None,
    **server: object,
) -> Path:
    """A configuration file for a loopback server on its own journal and keys in
    ``folder``; ``server`` adds keys to the ``server`` section, ``container`` to the
    ``container`` section, ``sections`` whole top-level sections (YAML text) at the end.
    ``warm_pool_size``: 0 (no pool) unless given; None leaves the shipped default (1).
    ``address``: where the server and its forwarders listen (a loopback address: several
    front ends on one machine each take their own). ``database``: the journal, when it is
    not the SQLite file in ``folder`` (a ``postgresql://`` URL shared by front ends)."""
    extra = "".join(f"  {key}: {value}\n" for key, value in server.items())
    more = "".join(f"  {key}: {value}\n" for key, value in (container or {}).items())
    # No pool by default: on 2 cores, each test's server would boot an extra VM in the
    # background, slowing the test's own boots (and leaving it one more domain to end).
    pool = "" if warm_pool_size is None else f"  warm_pool_size: {warm_pool_size}\n"
    config = folder / "config.yaml"
    config.write_text(
        "container:\n"
        "  libvirt_uri: 'qemu:///system'\n"
        f"  container_iso_file_path: '{iso}'\n"
        "  container_memory: 256\n"
        "  container_vcpus: 1\n"
        f"{pool}"
        f"{more}"
        "server:\n"
        f"  bind_address: {address}\n"
        f"  database: '{database or folder / 'journal.sqlite3'}'\n"
        f"  public_rsa_key_file_path: '{folder}/rsa/public.pem'\n"
        f"  private_rsa_key_file_path: '{folder}/rsa/private.pem'\n"
        f"  on_start_live_containers: {mode}\n"
        f"{extra}"
        "port_forwarding:\n"
        f"  port_range: [{ports[0]}, {ports[1]}]\n"
        f"  bind_address: {address}\n"
        f"{sections}"
    )
    return config


class ServeProcess(ServeChild):
    """A started server; ``address`` and ``port`` are where it listens (``address`` is
    127.0.0.1 when it listens on every address). ``extra``: more ``serve`` options."""

    def __init__(
        self, config: Path, env: dict[str, str] | None = None, extra: Sequence[str] = ()
    ) -> None:
        super().__init__("--config", str(config), "--port", "0", *extra, env=env)
        match = self.wait_for_line(r"serving on ([\d.]+):(\d+)", timeout=120)
        # A server on every address (0.0.0.0) is reached on the loopback.
        self.address = "127.0.0.1" if match.group(1) == "0.0.0.0" else match.group(1)
        self.port = int(match.group(2))

    def client(self, timeout: float = 240) -> Client:
        return Client(self.address, self.port, timeout=timeout)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._reader.join(timeout=10)
