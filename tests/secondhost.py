"""A real second libvirt host on this machine: an unprivileged ``libvirtd`` of its own user,
reached over libvirt's remote driver at ``qemu+tcp://127.0.0.12:16511/session``.

What it takes (measured on Debian 12, libvirt 9.0, no usable KVM):

- a dedicated system user (``anwhost2``, with a home, no password, no login shell), made
  once with ``useradd``;
- ``~/.config/libvirt/libvirtd.conf`` of that user: TCP only, on 127.0.0.12:16511, no
  authentication (loopback tests only: docs/scaling.md says how a real host is secured);
- a runtime folder the user owns (``XDG_RUNTIME_DIR=/run/user/UID``: the daemon's sockets
  and pid file) and a clean environment (``HOME``, ``USER``, ``PATH``); then
  ``/usr/sbin/libvirtd --listen -d`` as that user (``runuser``). ``-d`` returns once the
  daemon is initialised; the daemon starts its own ``virtlogd`` on first use;
- nothing else: the session daemon offers only ``domain type='qemu'`` (the user cannot open
  /dev/kvm, and KVM does not work here anyway), QEMU runs as that user (no apparmor or
  seccomp profile is involved; the user-mode network forward binds 127.0.0.12), and the
  only permission that matters is that the user can read the ISO: :meth:`provide_iso`
  copies it under the user's home.

A cold first start takes a few seconds (libvirt probes QEMU's capabilities and caches them
under ``~/.cache/libvirt``); a later start about half a second.

Failures for the tests of host loss, all by the daemon's PID (its pid file, checked against
/proc: owned by the user and running /usr/sbin/libvirtd), never by name: :meth:`stop`
(SIGSTOP), :meth:`cont` (SIGCONT), :meth:`kill` (SIGKILL; the guests' QEMU processes live
on, as on a real host whose daemon crashed), :meth:`start` again.

:meth:`close` destroys the domains left on the host, ends the daemon, its ``virtlogd`` and
every other process of the user (QEMU guests outliving a killed daemon) by PID, and checks
that nothing listens on 127.0.0.12 any more. A lock file keeps two test runs from sharing
(and ending) one daemon: a second run waits for the first to close it.

Use :func:`shared` (one daemon per process however many modules ask) or the fixtures
``second_host_daemon`` (session) and ``second_host`` (per test: running at its start, and
no domain of the test left on the host at its end), imported into the test module.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from anweddol_actors.hypervisor import Hypervisor, HypervisorError

USER = "anwhost2"
ADDRESS = "127.0.0.12"
PORT = 16511
URI = f"qemu+tcp://{ADDRESS}:{PORT}/session"
LIBVIRTD = "/usr/sbin/libvirtd"
LOCK_PATH = "/tmp/anweddol-actors-second-host.lock"
# The daemon's configuration: TCP on the loopback address only, no TLS, no authentication.
LIBVIRTD_CONF = (
    "# Written by tests/secondhost.py: a second libvirt host for the tests, on loopback only.\n"
    "listen_tls = 0\n"
    "listen_tcp = 1\n"
    f'tcp_port = "{PORT}"\n'
    f'listen_addr = "{ADDRESS}"\n'
    'auth_tcp = "none"\n'
)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
COMMAND_TIMEOUT = 30.0
POLL = 0.05


class SecondHostError(RuntimeError):
    """The second host could not be set up, started or ended."""


def _proc_status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: it holds no socket and no guest)."""
    state = _proc_status(pid).get("State", "")
    return bool(state) and not state.startswith("Z")


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait (bounded) until none of ``pids`` is alive; the ones still alive."""
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in pids if _alive(pid)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def listening_on(address: str) -> list[int]:
    """TCP ports something listens on at ``address`` (IPv4), from /proc/net/tcp."""
    wanted = "".join(f"{int(part):02X}" for part in reversed(address.split(".")))
    ports = []
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local_address, _, port = fields[1].partition(":")
            if fields[3] == "0A" and local_address == wanted:  # 0A: LISTEN
                ports.append(int(port, 16))
    return sorted(ports)


class SecondHost:
    """The second libvirt host: set up, started and ended by :meth:`open` / :meth:`close`
    (or ``with``). ``seconds_to_start``: how long the last :meth:`start` that started the
    daemon took, from ``runuser`` to the first connection."""

    def __init__(self, user: str = USER, address: str = ADDRESS, port: int = PORT) -> None:
        self.user = user
        self.address = address
        self.port = port
        self.uri = f"qemu+tcp://{address}:{port}/session"
        self.seconds_to_start: float | None = None
        self._lock = None
        self._account: pwd.struct_passwd | None = None

    # -- the account and its environment ------------------------------------------------

    @property
    def account(self) -> pwd.struct_passwd:
        if self._account is None:
            raise SecondHostError("the second host is not set up (open() it first)")
        return self._account

    @property
    def home(self) -> Path:
        return Path(self.account.pw_dir)

    @property
    def runtime_dir(self) -> Path:
        return Path(f"/run/user/{self.account.pw_uid}")

    @property
    def pid_file(self) -> Path:
        return self.runtime_dir / "libvirt" / "libvirtd.pid"

    def _environment(self) -> dict[str, str]:
        # A clean environment: nothing of root's (its XDG folders, its libvirt URI) may
        # steer the user's daemon.
        return {
            "HOME": str(self.home),
            "USER": self.user,
            "LOGNAME": self.user,
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
        }

    def run_as(self, *command: str, stdin: str | None = None) -> str:
        """Run ``command`` as the host's user (bounded); its standard output."""
        done = subprocess.run(
            ["runuser", "-u", self.user, "--", *command],
            input=stdin,
            capture_output=True,
            text=True,
            env=self._environment(),
            timeout=COMMAND_TIMEOUT,
        )
        if done.returncode != 0:
            raise SecondHostError(
                f"{' '.join(command)} as {self.user} failed ({done.returncode}): "
                f"{done.stderr.strip()}"
            )
        return done.stdout

    def _ensure_user(self) -> None:
        if os.geteuid() != 0:
            raise SecondHostError("the second host needs root (useradd, runuser)")
        try:
            self._account = pwd.getpwnam(self.user)
            return
        except KeyError:
            pass
        done = subprocess.run(
            [
                "useradd",
                "--system",
                "--create-home",
                "--home-dir",
                f"/home/{self.user}",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "anweddol_actors second test host",
                self.user,
            ],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        # 9: made meanwhile by a concurrent run; the account is what we need either way.
        if done.returncode not in (0, 9):
            raise SecondHostError(f"useradd {self.user} failed: {done.stderr.strip()}")
        self._account = pwd.getpwnam(self.user)

    def _prepare(self) -> None:
        """The user, its runtime folder and its libvirtd.conf (all idempotent)."""
        self._ensure_user()
        account = self.account
        # The home must exist and be the user's (an account made without one would not do).
        self.home.mkdir(mode=0o750, exist_ok=True)
        os.chown(self.home, account.pw_uid, account.pw_gid)
        self.runtime_dir.parent.mkdir(mode=0o755, exist_ok=True)
        self.runtime_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(self.runtime_dir, account.pw_uid, account.pw_gid)
        self.runtime_dir.chmod(0o700)
        config = self.home / ".config" / "libvirt"
        self.run_as("mkdir", "-p", str(config))
        self.run_as("tee", str(config / "libvirtd.conf"), stdin=LIBVIRTD_CONF)

    # -- the daemon -----------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The running daemon's PID, from its pid file, when /proc confirms it is ours."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        status = _proc_status(pid)
        if not status or status.get("State", "").startswith("Z"):
            return None
        if status.get("Uid", "").split()[:1] != [str(self.account.pw_uid)]:
            return None  # a reused PID: not the daemon
        try:
            if os.readlink(f"/proc/{pid}/exe") != LIBVIRTD:
                return None
        except OSError:
            return None
        return pid

    def running(self) -> bool:
        return self.pid is not None

    def answers(self) -> bool:
        """Whether the remote URI opens now (a connection opened and closed)."""
        try:
            Hypervisor(self.uri).close()
        except HypervisorError:
            return False
        return True

    def start(self, timeout: float = START_TIMEOUT) -> float:
        """Start the daemon unless it runs; wait (bounded) until the URI answers. Returns
        the seconds that took (0 when it was running and answering)."""
        began = time.monotonic()
        started = self.pid is None
        if started:
            # -d: libvirtd forks into the background once initialised (its sockets bound).
            self.run_as(LIBVIRTD, "--listen", "-d")
        deadline = began + timeout
        while not self.answers():
            if time.monotonic() >= deadline:
                raise SecondHostError(f"{self.uri} did not answer within {timeout:g} s")
            time.sleep(POLL)
        took = time.monotonic() - began
        if started:
            self.seconds_to_start = took
        return took

    def _daemon_pid(self) -> int:
        pid = self.pid
        if pid is None:
            raise SecondHostError(f"the libvirtd of {self.user} is not running")
        return pid

    def stop(self) -> None:
        """SIGSTOP the daemon: it holds its connections and answers nothing (a hung host)."""
        os.kill(self._daemon_pid(), signal.SIGSTOP)

    def cont(self) -> None:
        """SIGCONT the daemon after :meth:`stop`."""
        os.kill(self._daemon_pid(), signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the daemon (a crashed host daemon) and wait until it is gone. Its QEMU
        guests keep running, as they would on a real host."""
        pid = self._daemon_pid()
        os.kill(pid, signal.SIGKILL)
        if _wait_gone([pid], STOP_TIMEOUT):
            raise SecondHostError(f"libvirtd (pid {pid}) still alive after SIGKILL")
        # Its main thread turns zombie before the other threads have closed the files they
        # share: the listening socket goes with the last of them, a moment later.
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.port in listening_on(self.address):
            if time.monotonic() >= deadline:
                raise SecondHostError(f"port {self.port} still listened on after SIGKILL")
            time.sleep(POLL)

    def user_processes(self) -> list[int]:
        """PIDs of every live process of the host's user (daemon, virtlogd, QEMU), from /proc."""
        uid = str(self.account.pw_uid)
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            status = _proc_status(int(entry))
            if status.get("Uid", "").split()[:1] == [uid] and _alive(int(entry)):
                found.append(int(entry))
        return sorted(found)

    # -- what the guests need ---------------------------------------------------------------

    def provide_iso(self, source: str | Path) -> Path:
        """A copy of ``source`` the user can read, under its home; an existing copy of the
        same size and modification time is reused."""
        source = Path(source)
        folder = self.home / "images"
        self.run_as("mkdir", "-p", str(folder))
        target = folder / source.name
        wanted = source.stat()
        try:
            have = target.stat()
            if (have.st_size, have.st_mtime_ns) == (wanted.st_size, wanted.st_mtime_ns):
                return target
        except FileNotFoundError:
            pass
        partial = folder / f".{source.name}.{os.getpid()}.partial"
        shutil.copy2(source, partial)  # copy2: the modification time comes along
        os.chown(partial, self.account.pw_uid, self.account.pw_gid)
        partial.chmod(0o644)
        os.replace(partial, target)
        return target

    def marked_domains(self) -> list[str]:
        """UUIDs of the project's domains on this host (its daemon must answer)."""
        with Hypervisor(self.uri) as hypervisor:
            return hypervisor.list_marked()

    def destroy_domains(self, uuids: list[str] | None = None) -> list[str]:
        """Destroy ``uuids`` (default: every domain of the project) on this host; the ones
        that were there."""
        with Hypervisor(self.uri) as hypervisor:
            found = hypervisor.list_marked() if uuids is None else uuids
            return [uuid for uuid in found if hypervisor.destroy_domain(uuid)]

    # -- lifetime ---------------------------------------------------------------------------

    def open(self) -> SecondHost:
        """Take the lock (a concurrent run waits here; pytest-timeout bounds it like the vm
        lock), set up, start."""
        lock = open(LOCK_PATH, "a")  # noqa: SIM115 - held until close()
        fcntl.flock(lock, fcntl.LOCK_EX)
        self._lock = lock
        try:
            self._prepare()
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Destroy the domains left, end every process of the user by PID, check that
        nothing listens on the host's address, release the lock."""
        try:
            if self._account is not None:
                self._end_everything()
        finally:
            if self._lock is not None:
                self._lock.close()  # releases the lock
                self._lock = None

    def _end_everything(self) -> None:
        problems = []
        pid = self.pid
        if pid is not None:
            _signal(pid, signal.SIGCONT)  # a stopped daemon can neither answer nor exit
            try:
                self.destroy_domains()
            except HypervisorError as exc:
                problems.append(f"cannot destroy the domains left: {exc}")
            _signal(pid, signal.SIGTERM)
            if _wait_gone([pid], STOP_TIMEOUT):
                _signal(pid, signal.SIGKILL)
        # Whatever is left: virtlogd, and QEMU guests a killed daemon could not end.
        left = self.user_processes()
        for leftover in left:
            _signal(leftover, signal.SIGKILL)
        if _wait_gone(left, STOP_TIMEOUT):
            problems.append(f"processes of {self.user} outlived SIGKILL: {left}")
        deadline = time.monotonic() + STOP_TIMEOUT
        while listening_on(self.address) and time.monotonic() < deadline:
            time.sleep(POLL)
        if listening_on(self.address):
            problems.append(f"still listening on {self.address}: {listening_on(self.address)}")
        if problems:
            raise SecondHostError("; ".join(problems))

    def __enter__(self) -> SecondHost:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_shared: SecondHost | None = None
_users = 0


@contextlib.contextmanager
def shared() -> Iterator[SecondHost]:
    """The process's one second host, opened by the first user and closed by the last:
    several test modules importing the session fixture get one daemon, not two."""
    global _shared, _users
    if _shared is None:
        _shared = SecondHost().open()
    _users += 1
    try:
        yield _shared
    finally:
        _users -= 1
        if _users == 0:
            host, _shared = _shared, None
            host.close()


@pytest.fixture(scope="session")
def second_host_daemon() -> Iterator[SecondHost]:
    with shared() as host:
        yield host


@pytest.fixture
def second_host(second_host_daemon: SecondHost) -> Iterator[SecondHost]:
    """The second host, running and answering at the start of the test. At its end it runs
    again (a test may have stopped or killed it) and the domains the test left on it are
    destroyed and fail the test, as the vm leak check does for qemu:///system."""
    host = second_host_daemon
    if host.pid is not None:
        _signal(host.pid, signal.SIGCONT)
    host.start()
    before = set(host.marked_domains())
    yield host
    if host.pid is not None:
        _signal(host.pid, signal.SIGCONT)
    host.start()
    # The server under test may still be ending its domains: give it the leak check's time.
    deadline = time.monotonic() + 10
    while (left := sorted(set(host.marked_domains()) - before)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        host.destroy_domains(left)
        pytest.fail(f"test left {len(left)} domain(s) on {host.uri} (destroyed): {left}")
