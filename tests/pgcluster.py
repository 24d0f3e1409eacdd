"""A throwaway PostgreSQL server: started into a temporary folder, stopped and removed.

Plain Python (no pytest), so that both the tests' fixtures (tests/pgserver.py) and the
benchmarks (benchmarks/journal_backends.py) start and stop it the same way.

Debian's ``postgresql`` package (scripts/setup --dev) provides the binaries under
/usr/lib/postgresql/VERSION/bin; the newest version found is used. ``initdb`` and
``pg_ctl`` run as the ``postgres`` user (PostgreSQL refuses to run as root) into a
temporary folder owned by it; the server listens on 127.0.0.1 only, on a free port, with
its unix socket in that folder and ``fsync=on``. :func:`stop` runs ``pg_ctl stop -m
fast``, else kills the PID in ``postmaster.pid``, and removes the folder. What cannot be
started raises :class:`PgUnavailable` with one line saying why (and what to install).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from anweddol_actors.errors import AnweddolError

ROLE = "anweddol"
_START_TIMEOUT = 60  # seconds: pg_ctl -w waits at most this long for the server to answer
_STOP_TIMEOUT = 30
_COMMAND_TIMEOUT = 120


class PgUnavailable(AnweddolError):
    """No PostgreSQL server could be started here (binaries missing, initdb or start
    failed); the message is one line."""


def postgresql_bin() -> Path:
    """The newest /usr/lib/postgresql/VERSION/bin holding initdb and pg_ctl."""
    found = [
        Path(folder)
        for folder in glob.glob("/usr/lib/postgresql/*/bin")
        if Path(folder, "initdb").is_file() and Path(folder, "pg_ctl").is_file()
    ]
    if not found:
        raise PgUnavailable(
            "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin/initdb): install "
            "Debian's postgresql package (scripts/setup --dev)"
        )
    return max(found, key=lambda folder: _version_key(folder.parent.name))


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PgServer:
    bin: Path
    folder: Path
    port: int
    superuser_password: str
    role_password: str
    as_postgres: list[str]

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def version(self) -> str:
        """The binaries' major version (the name of their /usr/lib/postgresql folder)."""
        return self.bin.parent.name

    def url(self, database: str, *, superuser: bool = False) -> str:
        user, password = (
            ("postgres", self.superuser_password)
            if superuser
            else (
                ROLE,
                self.role_password,
            )
        )
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def admin(self, *statements: str, database: str = "postgres") -> list[tuple]:
        """Run statements as the superuser (autocommit: CREATE DATABASE needs it); returns
        the last one's rows."""
        import psycopg2  # here: only what uses a PostgreSQL server needs the driver

        connection = psycopg2.connect(
            dbname=database,
            user="postgres",
            password=self.superuser_password,
            host="127.0.0.1",
            port=self.port,
            connect_timeout=10,
        )
        try:
            connection.autocommit = True
            rows: list[tuple] = []
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
                    rows = cursor.fetchall() if cursor.description else []
            return rows
        finally:
            connection.close()

    def create_database(self, prefix: str = "test") -> str:
        name = f"{prefix}_{secrets.token_hex(6)}"
        self.admin(f'CREATE DATABASE "{name}" OWNER {ROLE}')
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def run(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.as_postgres, *command],
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT,
            cwd=self.folder,
        )


def _as_postgres() -> tuple[list[str], int | None, int | None]:
    """The prefix that runs a command as ``postgres`` (nothing when not root), its uid/gid."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        raise PgUnavailable(
            "no postgres account: install Debian's postgresql package (scripts/setup --dev)"
        ) from None
    return ["runuser", "-u", "postgres", "--"], account.pw_uid, account.pw_gid


def start() -> PgServer:
    """A running server with the role ``anweddol`` (see :meth:`PgServer.url`). Whatever
    was started is stopped and removed again when this fails or is interrupted (Ctrl-C)."""
    bin_folder = postgresql_bin()
    prefix, uid, gid = _as_postgres()
    folder = Path(tempfile.mkdtemp(prefix="anweddol-pg-"))
    server = PgServer(
        bin=bin_folder,
        folder=folder,
        port=0,
        superuser_password=secrets.token_hex(16),
        role_password=secrets.token_hex(16),
        as_postgres=prefix,
    )
    try:
        _initdb(server, uid, gid)
        _start_server(server)
        server.admin(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{server.role_password}'")
    except BaseException:
        stop(server)  # KeyboardInterrupt too: nothing started may outlive the caller
        raise
    return server


def _initdb(server: PgServer, uid: int | None, gid: int | None) -> None:
    if uid is not None:
        os.chown(server.folder, uid, gid)
    password_file = server.folder / "pwfile"
    password_file.write_text(server.superuser_password + "\n")
    password_file.chmod(0o600)
    if uid is not None:
        os.chown(password_file, uid, gid)
    try:
        initdb = server.run(
            str(server.bin / "initdb"),
            "-D",
            str(server.data),
            "-U",
            "postgres",
            f"--pwfile={password_file}",
            "--auth-host=scram-sha-256",
            "--auth-local=peer",
            "--encoding=UTF8",
            "--no-locale",
        )
    finally:
        password_file.unlink(missing_ok=True)
    if initdb.returncode != 0:
        reason = (initdb.stderr.strip().splitlines() or ["no message"])[-1]
        raise PgUnavailable(f"initdb failed: {reason}")


def _start_server(server: PgServer) -> None:
    for _attempt in range(3):  # a free port may be taken between probe and bind
        server.port = _free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {server.port} -k {server.folder} -c fsync=on"
        started = server.run(
            str(server.bin / "pg_ctl"),
            "-D",
            str(server.data),
            "-l",
            str(server.folder / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            str(_START_TIMEOUT),
            "start",
        )
        if started.returncode == 0:
            return
    log = server.folder / "server.log"
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    raise PgUnavailable(f"pg_ctl start failed: {(lines or ['no log'])[-1]}")


def stop(server: PgServer) -> None:
    """Stop the server (``pg_ctl stop -m fast``, else SIGKILL to the postmaster's PID) and
    remove its folder. Harmless on a server that never started."""
    pid_file = server.data / "postmaster.pid"
    if server.data.exists():  # else initdb never ran: there is nothing to stop
        try:
            stopped = server.run(
                str(server.bin / "pg_ctl"),
                "-D",
                str(server.data),
                "-m",
                "fast",
                "-w",
                "-t",
                str(_STOP_TIMEOUT),
                "stop",
            )
            failed = stopped.returncode != 0
        except subprocess.TimeoutExpired:
            failed = True
        if failed and pid_file.exists():
            with contextlib.suppress(ValueError, OSError, ProcessLookupError):
                pid = int(pid_file.read_text().splitlines()[0])
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + _STOP_TIMEOUT
                while time.monotonic() < deadline:
                    os.kill(pid, 0)  # raises ProcessLookupError once it is gone
                    time.sleep(0.05)
    shutil.rmtree(server.folder, ignore_errors=True)
