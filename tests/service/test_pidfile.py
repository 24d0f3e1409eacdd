"""The PID file: exclusive, never trusting a PID that is not our serve."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from servicecli import wait_for

from anweddol_actors.service import pidfile


def test_write_read_remove(tmp_path):
    path = tmp_path / "run" / "server.pid"
    pidfile.write(path)
    assert pidfile.read_pid(path) == os.getpid()
    assert path.read_text() == f"{os.getpid()}\n"
    assert not pidfile.remove(path, os.getpid() + 1)  # not ours: kept
    assert pidfile.remove(path)
    assert not path.exists()


def test_stale_files_are_replaced(tmp_path):
    path = tmp_path / "server.pid"
    for content in ("garbage\n", "", f"{os.getppid()}\n"):  # the parent: alive, not a serve
        path.write_text(content)
        assert pidfile.running_pid(path) is None
        pidfile.write(path)
        assert pidfile.read_pid(path) == os.getpid()
        path.unlink()


def test_a_running_serve_is_never_replaced(tmp_path):
    # A stand-in whose command line reads like a serve's: what /proc shows is what counts.
    stand_in = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "anweddol_actors", "serve"]
    )
    try:
        path = tmp_path / "server.pid"
        path.write_text(f"{stand_in.pid}\n")
        # Just after exec the kernel may show an empty command line for a moment.
        wait_for(lambda: pidfile.is_our_serve(stand_in.pid), 10, "the stand-in's cmdline")
        assert pidfile.running_pid(path) == stand_in.pid
        with pytest.raises(
            pidfile.PidFileError, match=f"names a running server .PID {stand_in.pid}"
        ):
            pidfile.write(path)
        assert pidfile.read_pid(path) == stand_in.pid
        assert pidfile.uptime(stand_in.pid) >= 0
    finally:
        stand_in.kill()
        stand_in.wait()
    assert not pidfile.is_our_serve(stand_in.pid)
    assert pidfile.uptime(stand_in.pid) is None
