"""SIGHUP re-reads the configuration file: access tokens and the IP filter change in the
running server, a now-invalid file changes nothing, other keys wait for a restart."""

from __future__ import annotations

import os
import signal

import pytest
from servicecli import cli, listen_port, wait_for, write_config

from anweddol_actors.client import Client
from anweddol_actors.client.blocking import ClientError
from anweddol_actors.policy.access_tokens import AccessTokenStore

TOKENS_OFF = "access_token:\n  enabled: false\n  access_token_database_file_path: '{db}'\n"
TOKENS_ON = TOKENS_OFF.replace("false", "true")
DENY_LOOPBACK = "ip_filter:\n  enabled: true\n  denied_ip_list: ['127.0.0.0/8']\n"


@pytest.fixture
def running(folder):
    """A started server and a way to rewrite its file and send SIGHUP."""
    db = folder / "tokens.sqlite3"
    config = write_config(folder, TOKENS_OFF.format(db=db))
    assert cli("start", "-c", str(config)).returncode == 0
    pid = int((folder / "run" / "server.pid").read_text())
    log = folder / "log" / "server.log"
    port = listen_port(config)
    base = config.read_text().split("access_token:")[0]

    def reload(sections: str) -> str:
        """Rewrite the file's policy sections, SIGHUP, return the reload's log line."""
        seen = log.read_text().count("reload")
        config.write_text(base + sections)
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: log.read_text().count("reload") > seen, what="reload line")
        return [line for line in log.read_text().splitlines() if "reload" in line][-1]

    def stat(**kwargs) -> dict:
        return Client("127.0.0.1", port, timeout=10).stat(**kwargs)

    yield reload, stat, db
    config.write_text(base + TOKENS_OFF.format(db=db))  # stop must read it
    assert cli("stop", "-c", str(config)).returncode == 0


def test_tokens_reloaded(running):
    reload, stat, db = running
    assert stat()["success"] is True  # tokens off at start

    with AccessTokenStore(db) as store:  # added after the start
        entry, token = store.add()
    line = reload(TOKENS_ON.format(db=db))
    assert f"access tokens on ({db})" in line and "reloaded" in line
    assert stat()["message"] == "Bad request (Access token is required)"
    assert stat(access_token=token)["success"] is True

    with AccessTokenStore(db) as store:
        store.disable(entry)
    assert stat(access_token=token)["message"] == "Bad authentication (Invalid access token)"

    reload(TOKENS_OFF.format(db=db))
    assert stat()["success"] is True


def test_ip_filter_reloaded(running):
    reload, stat, db = running
    line = reload(TOKENS_OFF.format(db=db) + DENY_LOOPBACK)
    assert "IP filter on (1 allowed, 1 denied)" in line
    with pytest.raises(ClientError):
        stat()
    reload(TOKENS_OFF.format(db=db))
    assert stat()["success"] is True


def test_invalid_file_keeps_the_running_policies(running):
    reload, stat, db = running
    reload(TOKENS_OFF.format(db=db) + DENY_LOOPBACK)
    line = reload(TOKENS_OFF.format(db=db) + DENY_LOOPBACK + "bogus_section: 1\n")
    assert "reload of" in line and "failed, running policies kept" in line
    with pytest.raises(ClientError):
        stat()  # the filter of the last good file still holds


def test_other_keys_need_a_restart(running):
    reload, stat, db = running
    line = reload(
        TOKENS_OFF.format(db=db).replace(
            "access_token:", "log_rotation:\n  max_log_lines_amount: 10\naccess_token:"
        )
    )
    assert line.endswith("changed, needs a restart: log_rotation.max_log_lines_amount")
    # Back as it runs: nothing waits for a restart any more.
    assert "needs a restart" not in reload(TOKENS_OFF.format(db=db))
