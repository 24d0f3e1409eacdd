"""The endpoint login against a real SSH server on loopback: the password reaches the
setup script on standard input (or on its command line for an image of the original
contract), and the guest's host key is recorded at the first login and required after."""

from __future__ import annotations

import pykka
import pytest

from anweddol_actors.engine.entities import start_shell_with, stop_actor
from anweddol_actors.guest import EndpointShell, HostKeyMismatch
from anweddol_actors.guest.shell import SETUP_SCRIPT, host_key_text
from anweddol_actors.journal import Journal
from tests.guest.loopback_ssh import LoopbackSSH


@pytest.fixture
def guest():
    with LoopbackSSH() as server:
        yield server


def test_password_goes_on_stdin_when_the_script_declares_it(guest):
    with EndpointShell("127.0.0.1", guest.port) as shell:
        shell.administer("user_12345", "Secret123")
    probe, setup = guest.commands
    assert probe[0].startswith("grep -qxF") and probe[0].endswith(SETUP_SCRIPT)
    assert setup == (f"sudo {SETUP_SCRIPT} user_12345 22", b"Secret123\n")
    assert all("Secret123" not in command for command, _ in guest.commands)


def test_an_image_of_the_original_contract_gets_the_password_in_argv(caplog):
    with LoopbackSSH(stdin_contract=False) as original:
        with EndpointShell("127.0.0.1", original.port) as shell:
            shell.administer("user_12345", "Secret123", port=2222)
            shell.administer("user_12346", "Other456")  # asked once per shell
        assert [command for command, _ in original.commands] == [
            original.commands[0][0],
            f"sudo {SETUP_SCRIPT} user_12345 Secret123 2222",
            f"sudo {SETUP_SCRIPT} user_12346 Other456 22",
        ]
    assert "takes the password on its command line" in caplog.text


def test_host_key_is_checked_against_the_expected_one(guest):
    with EndpointShell("127.0.0.1", guest.port) as first:
        seen = first.host_key
    assert seen == host_key_text(guest.key)
    with EndpointShell("127.0.0.1", guest.port, host_key=seen) as again:
        assert again.is_open
    guest.new_key()
    shell = EndpointShell("127.0.0.1", guest.port, host_key=seen)
    with pytest.raises(HostKeyMismatch, match="recorded at its first login") as refused:
        shell.open()
    assert refused.value.expected == seen
    assert refused.value.seen == host_key_text(guest.key)
    assert not shell.is_open
    # Refused during the key exchange: no command ran on the impostor.
    assert len(guest.commands) == 0


def _shell_actor(journal, container_uuid, port):
    actor = start_shell_with(
        journal, f"{container_uuid}.shell", "127.0.0.1", port, "endpoint", "endpoint", 5.0
    )
    actor.create().get()
    return actor


def test_the_journal_records_the_first_key_and_refuses_another(guest, tmp_path):
    container_uuid = "0d5e1c8a-4a53-4b3c-9d0e-3f1a2b3c4d5e"
    journal = Journal(tmp_path / "journal.sqlite3")
    try:
        first = _shell_actor(journal, container_uuid, guest.port)
        first.open().get()
        recorded = journal.host_key(container_uuid)
        assert recorded == host_key_text(guest.key)
        first.close().get()
        stop_actor(first)

        # A handler opening the shell again: same key, accepted, record unchanged.
        again = _shell_actor(journal, container_uuid, guest.port)
        again.open().get()
        again.close().get()
        stop_actor(again)

        guest.new_key()  # the guest was replaced (or rebooted into a new key)
        impostor = _shell_actor(journal, container_uuid, guest.port)
        with pytest.raises(HostKeyMismatch):
            impostor.open().get()
        state = impostor.describe().get()["state"]
        stop_actor(impostor)
        assert state == "destroyed"  # failed through its machine, journalled
        assert journal.host_key(container_uuid) == recorded
        triggers = [row["trigger"] for row in journal.history(f"{container_uuid}.shell")]
        assert triggers[-3:] == ["open", "fail", "destroy"]
        # Survives a reopened journal (a restarted server).
        journal.close()
        journal = Journal(tmp_path / "journal.sqlite3")
        assert journal.host_key(container_uuid) == recorded
    finally:
        journal.close()
    assert pykka.ActorRegistry.get_all() == []
