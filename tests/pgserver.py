"""A real PostgreSQL server for the tests, started once per session (only if a test asks).

Debian's ``postgresql`` package (scripts/setup --dev) provides the binaries under
/usr/lib/postgresql/VERSION/bin; the newest version found is used. ``initdb`` and
``pg_ctl`` run as the ``postgres`` user (PostgreSQL refuses to run as root) into a
temporary folder owned by it; the server listens on 127.0.0.1 only, on a free port, with
its unix socket in that folder. Stopped at the end of the session by ``pg_ctl stop -m
fast``, else by the PID in ``postmaster.pid``; the folder is removed.

Fixtures:

- ``pg_server``: the running server (:class:`PgServer`), session-scoped.
- ``pg_url``: a fresh database for one test, owned by a password-protected non-superuser
  role as an administrator would set it up, as the ``postgresql://`` URL the journal and
  the token store take; dropped after the test.
- ``store_url``: parametrized ``sqlite`` / ``postgresql``: a SQLite file path in the test's
  folder, or ``pg_url``. For tests of the stores, which must behave the same on both.

Missing binaries FAIL the tests that need them, with one line saying what to install: a
silently skipped backend would look tested.
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

import pytest

ROLE = "anweddol"
_START_TIMEOUT = 60  # seconds: pg_ctl -w waits at most this long for the server to answer
_STOP_TIMEOUT = 30
_COMMAND_TIMEOUT = 120


def postgresql_bin() -> Path:
    """The newest /usr/lib/postgresql/VERSION/bin holding initdb and pg_ctl."""
    found = [
        Path(folder)
        for folder in glob.glob("/usr/lib/postgresql/*/bin")
        if Path(folder, "initdb").is_file() and Path(folder, "pg_ctl").is_file()
    ]
    if not found:
        pytest.fail(
            "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin/initdb): install "
            "Debian's postgresql package (scripts/setup --dev)",
            pytrace=False,
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
        import psycopg2  # here: only the PostgreSQL tests need the driver

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

    def create_database(self) -> str:
        name = f"test_{secrets.token_hex(6)}"
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
        pytest.fail(
            "no postgres account: install Debian's postgresql package (scripts/setup --dev)",
            pytrace=False,
        )
    return ["runuser", "-u", "postgres", "--"], account.pw_uid, account.pw_gid


def _start() -> PgServer:
    bin_folder = postgresql_bin()
    prefix, uid, gid = _as_postgres()
    folder = Path(tempfile.mkdtemp(prefix="anweddol-pg-"))
    if uid is not None:
        os.chown(folder, uid, gid)
    server = PgServer(
        bin=bin_folder,
        folder=folder,
        port=0,
        superuser_password=secrets.token_hex(16),
        role_password=secrets.token_hex(16),
        as_postgres=prefix,
    )
    password_file = folder / "pwfile"
    password_file.write_text(server.superuser_password + "\n")
    password_file.chmod(0o600)
    if uid is not None:
        os.chown(password_file, uid, gid)
    initdb = server.run(
        str(bin_folder / "initdb"),
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
    password_file.unlink()
    if initdb.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        reason = (initdb.stderr.strip().splitlines() or ["no message"])[-1]
        pytest.fail(f"initdb failed: {reason}", pytrace=False)
    for _attempt in range(3):  # a free port may be taken between probe and bind
        server.port = _free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {server.port} -k {folder} -c fsync=on"
        started = server.run(
            str(bin_folder / "pg_ctl"),
            "-D",
            str(server.data),
            "-l",
            str(folder / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            str(_START_TIMEOUT),
            "start",
        )
        if started.returncode == 0:
            break
    else:
        log = folder / "server.log"
        lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
        _stop(server)
        pytest.fail(f"pg_ctl start failed: {(lines or ['no log'])[-1]}", pytrace=False)
    server.admin(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{server.role_password}'")
    return server


def _stop(server: PgServer) -> None:
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
    pid_file = server.data / "postmaster.pid"
    if failed and pid_file.exists():
        with contextlib.suppress(ValueError, OSError, ProcessLookupError):
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + _STOP_TIMEOUT
            while time.monotonic() < deadline:
                os.kill(pid, 0)  # raises ProcessLookupError once it is gone
                time.sleep(0.05)
    shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server():
    server = _start()
    try:
        yield server
    finally:
        _stop(server)


@pytest.fixture
def pg_url(pg_server):
    name = pg_server.create_database()
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite3")
    return request.getfixturevalue("pg_url")
