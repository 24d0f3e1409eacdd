"""``server.user``: serve started as root drops to it once everything root must open is
open; what the user writes later is handed to it; a user that cannot work is refused with
one line before anything starts."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
from servicecli import cli, kill_leftover, listen_port, wait_for, write_config

from anweddol_actors.client import Client
from anweddol_actors.policy.access_tokens import AccessTokenStore
from anweddol_actors.service import privileges

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")

NOBODY = privileges.lookup("nobody")


@pytest.fixture
def open_folder():
    """A folder ``nobody`` can reach: pytest's tmp_path sits under a root-only (0700)
    folder, which the dropped server could not traverse to its PID file."""
    folder = Path(tempfile.mkdtemp(prefix="anweddol-service-"))
    folder.chmod(0o755)
    yield folder
    kill_leftover(folder / "run" / "server.pid")
    shutil.rmtree(folder, ignore_errors=True)


def uids_of(pid: int) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(field) for field in line.split()[1:]]
    raise AssertionError("no Uid line")


def test_drops_to_nobody(open_folder):
    db = open_folder / "tokens.sqlite3"
    with AccessTokenStore(db) as store:
        _, token = store.add()
    config = write_config(
        open_folder,
        f"access_token:\n  enabled: true\n  access_token_database_file_path: '{db}'\n",
        user="nobody",
    )
    started = cli("start", "-c", str(config))
    assert started.returncode == 0, started.stdout
    pid = int((open_folder / "run" / "server.pid").read_text())
    try:
        # Real, effective, saved and filesystem uid: no way back to root.
        assert uids_of(pid) == [NOBODY.uid] * 4
        log = open_folder / "log" / "server.log"
        assert f"running as nobody (uid {NOBODY.uid}" in log.read_text()
        for written in ("journal.sqlite3", "log/server.log", "run/server.pid", "tokens.sqlite3"):
            assert (open_folder / written).stat().st_uid == NOBODY.uid, written
        private_key = open_folder / "rsa" / "private.pem"
        assert private_key.stat().st_uid == 0  # read as root, never handed over
        port = listen_port(config)
        assert Client("127.0.0.1", port, timeout=10).stat(access_token=token)["success"]

        # A reload, as nobody, reopens the token database it was handed.
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: "reloaded" in log.read_text(), what="reload line")
        assert "reload of" not in log.read_text()
        assert Client("127.0.0.1", port, timeout=10).stat(access_token=token)["success"]
    finally:
        stopped = cli("stop", "-c", str(config))
    assert stopped.stdout == "stopped\n"
    assert not (open_folder / "run" / "server.pid").exists()  # removed by nobody


def test_no_such_user_is_one_line(tmp_path):
    config = write_config(tmp_path, user="no-such-user-here")
    serve = cli("serve", "-c", str(config))
    assert serve.returncode == 2
    assert serve.stderr.splitlines()[-1] == "error: server.user: no such user 'no-such-user-here'"
    assert "Traceback" not in serve.stderr
    start = cli("start", "-c", str(config))
    assert start.returncode == 1
    assert start.stdout.startswith(
        "the server did not start: server.user: no such user 'no-such-user-here'"
    )


def test_forwarder_ports_the_user_cannot_bind(tmp_path):
    config = write_config(tmp_path, user="nobody")
    config.write_text(config.read_text().replace("[43000, 43099]", "[100, 199]"))
    serve = cli("serve", "-c", str(config))
    assert serve.returncode == 2
    assert serve.stderr.splitlines()[-1].startswith(
        "error: port_forwarding.port_range starts at 100: 'nobody' cannot bind ports below"
    )


def test_user_who_cannot_reach_libvirt_is_refused(tmp_path):
    """qemu:///system: the server's connection is made as root, but a reconnection after
    libvirtd restarts would be made as the user; one that cannot is refused at start."""
    config = write_config(tmp_path, user="nobody")
    config.write_text(config.read_text().replace("test:///default", "qemu:///system"))
    serve = cli("serve", "-c", str(config))
    if serve.returncode != 2 and "nobody cannot" not in serve.stderr:
        pytest.skip("nobody may use qemu:///system on this host")
    last = serve.stderr.splitlines()[-1]
    assert last.startswith("error: server.user: nobody cannot "), serve.stderr
    assert "Traceback" not in serve.stderr
