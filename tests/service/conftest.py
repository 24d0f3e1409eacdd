"""Each test gets a folder for its server's files; a server a failed test left running
is stopped at teardown by the PID its PID file names."""

from __future__ import annotations

import pytest
from servicecli import kill_leftover


@pytest.fixture
def folder(tmp_path):
    yield tmp_path
    kill_leftover(tmp_path / "run" / "server.pid")
