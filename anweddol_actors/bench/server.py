"""The server a benchmark measures, and the measuring of processes.

:class:`ServeChild` runs ``python -m anweddol_actors serve -c CONFIG`` as a child process,
the way an administrator runs it: a real configuration file in a temporary folder (its RSA
keys, journal, admin socket and log there too), libvirt's ``qemu:///system`` (or any URI),
``user`` networking, loopback only. It is stopped by its PID (SIGTERM, then SIGKILL past a
bound), and the folder is removed; the domains the server still had are destroyed by their
UUIDs as a last resort, so that a failed or interrupted run leaves no VM behind.

Also here, for the scripts of ``benchmarks/`` too: :func:`sample` (sequential timings),
:func:`end_child` (a ``multiprocessing`` child's bounded end), :func:`proc_status` and
:func:`cpu_seconds` (a process's threads, memory, descriptors and CPU time from /proc).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from anweddol_actors.errors import AnweddolError
from anweddol_actors.protocol.crypto import generate_private_key, private_pem

LOOPBACK = "127.0.0.1"
# The project's root: the child imports the same tree as this process.
_ROOT = Path(__file__).resolve().parents[2]
# Forwarder ports of the benchmark's servers, away from the e2e tests' (41000-42999).
FORWARDER_PORTS = (46000, 46999)
START_BOUND = 120.0  # seconds for `serve` to listen (it may build the dev image first)
STOP_BOUND = 150.0  # serve's own stop bound is 120 s


class BenchError(AnweddolError):
    """A benchmark could not run: the server did not start, a request failed."""


def free_port() -> int:
    """A loopback port free right now (the child binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def child_env() -> dict[str, str]:
    """This process's environment with this tree first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    return env


class ServeChild:
    """``python -m anweddol_actors serve`` in a temporary folder, started and stopped.

    ``warm_pool_size``: the configuration's ``container.warm_pool_size``. ``key_bits``:
    the server's RSA key (written to the folder before the start, so the start does not
    generate one). Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        *,
        libvirt_uri: str = "qemu:///system",
        iso: str | None = None,
        warm_pool_size: int = 0,
        key_bits: int = 4096,
        max_containers: int = 4,
        server_key: Any = None,
    ) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="anweddol-bench-"))
        self.libvirt_uri, self.iso = libvirt_uri, iso
        self.warm_pool_size, self.max_containers = warm_pool_size, max_containers
        self.port = free_port()
        self.admin_socket = str(self.folder / "admin.sock")
        self.journal_path = str(self.folder / "journal.sqlite3")
        self.log_path = self.folder / "serve.log"
        self.server_key = server_key or generate_private_key(key_bits)
        self.process: subprocess.Popen | None = None
        self.container_uuids: list[str] = []  # destroyed by UUID at the end if still there

    # -- configuration ---------------------------------------------------------------------

    def write_config(self) -> Path:
        keys = self.folder / "rsa"
        keys.mkdir(mode=0o700)
        private = keys / "private.pem"
        private.write_bytes(private_pem(self.server_key))
        private.chmod(0o600)
        public = self.server_key.public_key()
        (keys / "public.pem").write_bytes(
            public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        iso = self.iso
        if iso is None and self.libvirt_uri.startswith("test:"):
            # libvirt's test driver boots nothing: a stand-in spares building the image.
            iso = self.folder / "stand-in.iso"
            iso.write_bytes(b"not booted on the test driver")
        iso_line = f"  container_iso_file_path: '{iso}'\n" if iso else ""
        config = self.folder / "config.yaml"
        config.write_text(
            "container:\n"
            f"  libvirt_uri: '{self.libvirt_uri}'\n"
            f"{iso_line}"
            "  network_mode: user\n"
            f"  max_allowed_running_container_domains: {self.max_containers}\n"
            f"  warm_pool_size: {self.warm_pool_size}\n"
            "server:\n"
            "  bind_address: 127.0.0.1\n"
            f"  listen_port: {self.port}\n"
            f"  database: '{self.journal_path}'\n"
            f"  public_rsa_key_file_path: '{keys}/public.pem'\n"
            f"  private_rsa_key_file_path: '{keys}/private.pem'\n"
            f"  admin_socket_path: '{self.admin_socket}'\n"
            f"  log_file_path: '{self.log_path}'\n"
            # 64 clients from 127.0.0.1 and hundreds of idle connections are the load (the
            # schema takes no null here: a cap above the load lifts it).
            "  max_connections: 4096\n"
            "  max_connections_per_address: 4096\n"
            "  timeout: 60\n"
            "  request_deadline: 600\n"
            "port_forwarding:\n"
            f"  port_range: [{FORWARDER_PORTS[0]}, {FORWARDER_PORTS[1]}]\n"
            "  bind_address: 127.0.0.1\n"
        )
        return config

    # -- life ------------------------------------------------------------------------------

    def start(self) -> ServeChild:
        config = self.write_config()
        env = child_env()
        env["ANWEDDOL_ACTORS_CONFIG"] = str(config)
        # What serve says before its log file is open (a configuration error) goes here.
        with open(self.folder / "serve.stderr", "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "anweddol_actors", "serve", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
                cwd=self.folder,
            )
        deadline = time.monotonic() + START_BOUND
        while True:
            if self.process.poll() is not None:
                raise BenchError(f"serve exited ({self.process.returncode}): {self.log_tail()}")
            try:
                self.status(timeout=2)
                return self
            except BenchError:
                if time.monotonic() > deadline:
                    raise BenchError(f"serve did not answer in {START_BOUND:g} s") from None
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError("the server is not started")
        return self.process.pid

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        """The admin channel's ``status`` (engine/admin.py), its ``data``."""
        return admin_ask(self.admin_socket, "status", timeout=timeout)

    def log_tail(self, lines: int = 8) -> str:
        """The last lines of serve's standard error and log file, on one line."""
        text = []
        for path in (self.folder / "serve.stderr", self.log_path):
            try:
                text += path.read_text(errors="replace").splitlines()
            except OSError:
                continue
        return " | ".join(text[-lines:]) or "(nothing logged)"

    def stop(self) -> None:
        """SIGTERM by PID, bounded wait, SIGKILL; then the leftover domains and the folder."""
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=STOP_BOUND)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=30)
        finally:
            try:
                self._destroy_leftovers()
            finally:
                shutil.rmtree(self.folder, ignore_errors=True)

    def _destroy_leftovers(self) -> None:
        uuids = set(self.container_uuids) | self._journal_container_uuids()
        if not uuids or not self.libvirt_uri.startswith("qemu"):
            return
        # Loaded here: only a run that created containers talks to libvirt.
        from anweddol_actors.hypervisor import Hypervisor

        with Hypervisor(self.libvirt_uri) as hv:
            for uuid in uuids:
                try:
                    hv.destroy_domain(uuid)
                except Exception:  # noqa: S112 - already gone is the usual case
                    continue

    def _journal_container_uuids(self) -> set[str]:
        try:
            return {row["entity_id"] for row in self.history() if row["kind"] == "container"}
        except sqlite3.Error:
            return set()

    def history(self) -> list[dict[str, Any]]:
        """Every journalled transition (oldest first), read-only, also while the server
        runs (WAL lets a reader in beside the writer)."""
        if not os.path.exists(self.journal_path):
            return []
        uri = f"file:{self.journal_path}?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=30)
        try:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "SELECT time, kind, entity_id, trigger, source, dest FROM transitions ORDER BY id"
            ).fetchall()
        finally:
            db.close()
        return [dict(row) for row in rows]

    def __enter__(self) -> ServeChild:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def admin_ask(path: str, command: str, timeout: float = 5.0) -> dict[str, Any]:
    """One admin-channel request (a JSON line; admin/client.py speaks the same), its data.

    The bench package sits beside admin/ and does not import it; the channel is one line
    each way."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps({"command": command}).encode() + b"\n")
            chunks = []
            while not chunks or not chunks[-1].endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        reply = json.loads(b"".join(chunks))
    except (OSError, ValueError) as exc:
        raise BenchError(f"admin {command}: {exc}") from None
    if not isinstance(reply, dict) or not reply.get("ok"):
        raise BenchError(f"admin {command}: {reply!r}")
    data = reply.get("data")
    return data if isinstance(data, dict) else {}


# -- measuring -------------------------------------------------------------------------------


def sample(call: Callable[[], Any], runs: int = 20) -> list[float]:
    """The seconds each of ``runs`` calls of ``call`` took, one after the other."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def end_child(process: Any, folder: str, stop_event: Any = None) -> None:
    """Tell a ``multiprocessing`` child to stop (``stop_event``), wait for it (bounded:
    terminated after 120 s), and remove the benchmark's ``folder``."""
    if stop_event is not None:
        stop_event.set()
    process.join(timeout=120)
    if process.is_alive():
        process.terminate()
        process.join(timeout=30)
    shutil.rmtree(folder, ignore_errors=True)


def proc_status(pid: int) -> dict[str, int]:
    """``threads``, ``rss_kib`` and ``fds`` of process ``pid`` (fds: -1 if not readable)."""
    fields: dict[str, list[str]] = {}
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = -1
    return {"threads": int(fields["Threads"][0]), "rss_kib": int(fields["VmRSS"][0]), "fds": fds}


def settled_status(pid: int, seconds: float = 1.0, timeout: float = 30.0) -> dict[str, int]:
    """:func:`proc_status` once the thread count has not moved for ``seconds`` (bounded)."""
    deadline = time.monotonic() + timeout
    last, since = proc_status(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = proc_status(pid)
        if now["threads"] != last["threads"]:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= seconds:
            return now
    return proc_status(pid)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rpartition(")")[2].split()
    # After the command's closing parenthesis: state is field 3, utime 14 and stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def find_qemu_pid(domain_uuid: str) -> int | None:
    """The QEMU process running the domain ``domain_uuid`` (its command line names it)."""
    needle = domain_uuid.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                cmdline = file.read()
        except OSError:
            continue
        if b"qemu" in cmdline.split(b"\0", 1)[0] and needle in cmdline:
            return int(entry)
    return None
