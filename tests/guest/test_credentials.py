"""Client credentials: the original's format, within dropbear's password limit."""

from __future__ import annotations

import re

import pytest

from anweddol_actors.guest import EndpointShell, EndpointShellError, generate_credentials
from anweddol_actors.guest.shell import validate_account


def test_default_credentials_format():
    username, password = generate_credentials()
    assert re.fullmatch(r"user_[1-9][0-9]{4}", username)
    assert 10000 <= int(username[5:]) <= 99999
    assert re.fullmatch(r"[A-Za-z0-9]{100}", password)


def test_credentials_are_random():
    generated = {generate_credentials(16) for _ in range(50)}
    assert len({p for _, p in generated}) == 50
    assert len({u for u, _ in generated}) > 40


@pytest.mark.parametrize("length", [1, 12, 100])
def test_lengths_up_to_100(length):
    assert len(generate_credentials(length)[1]) == length


@pytest.mark.parametrize("length", [101, 120, 0, -5])
def test_bad_lengths_are_refused(length):
    with pytest.raises(ValueError, match="password_length"):
        generate_credentials(length)


def test_the_original_120_mentions_dropbear():
    with pytest.raises(ValueError, match="dropbear"):
        generate_credentials(120)


@pytest.mark.parametrize(
    "username, password, port",
    [
        ("User_1", "abc", 22),
        ("user;rm", "abc", 22),
        ("endpoint", "abc", 22),
        ("root", "abc", 22),
        ("user_1", "", 22),
        ("user_1", "a b", 22),
        ("user_1", "x" * 101, 22),
        ("user_1", "abc", 0),
        ("user_1", "abc", 65536),
        ("user_1", "abc", "22"),
    ],
)
def test_validate_account_refuses_what_the_script_refuses(username, password, port):
    with pytest.raises(ValueError):
        validate_account(username, password, port)


def test_administer_refuses_bad_arguments_before_any_connection():
    shell = EndpointShell("127.0.0.1", 1)
    with pytest.raises(ValueError):
        shell.administer("bad user", "abc")


def test_unopened_shell_refuses_commands():
    shell = EndpointShell("127.0.0.1", 1)
    assert not shell.is_open
    with pytest.raises(EndpointShellError, match="not open"):
        shell.execute("true")


def test_open_on_a_closed_port_is_a_connect_error():
    import socket

    from anweddol_actors.guest import EndpointConnectError

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(EndpointConnectError, match="cannot open SSH session"):
        EndpointShell("127.0.0.1", port, timeout=2).open()
