"""`client create` shows the container's time limits when the server sends them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from client_support import CREATE_DATA, TinyServer

from anweddol_actors.cli import main as cli_main
from anweddol_actors.cli.client import expiry_lines, format_seconds
from anweddol_actors.protocol.messages import make_response


@pytest.fixture
def create(server_key, capsys) -> Callable[..., str]:
    """Run `client create` against a real server answering CREATE_DATA plus `extra`."""

    def run(extra: dict[str, Any], *flags: str) -> str:
        data = {**CREATE_DATA, **extra}
        server = TinyServer(server_key, lambda request: make_response(True, "OK", data))
        try:
            args = ["client", "create", "127.0.0.1", "--port", str(server.port)]
            assert cli_main([*args, "--key-size", "1024", *flags]) == 0
        finally:
            server.close()
        assert server.errors == []
        return capsys.readouterr().out

    return run


def limit_lines(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if "limit:" in line]


def test_both_limits_are_printed_with_the_credentials(create):
    out = create({"container_max_lifetime": 7200, "container_max_idle_time": 3600})
    assert limit_lines(out) == [
        "lifetime limit: destroyed 7200 s (2 h) after creation",
        "idle limit: destroyed after 3600 s (1 h) with no connection open to port 10022",
    ]
    # Between the credentials and the instructions, indented like the credentials.
    lines = out.splitlines()
    at = lines.index("  lifetime limit: destroyed 7200 s (2 h) after creation")
    assert lines[at - 1] == "  container_listen_port: 10022"
    assert "ssh -p 10022 user_01234@127.0.0.1" in out


def test_null_limits_say_there_is_none(create):
    out = create({"container_max_lifetime": None, "container_max_idle_time": 900.5})
    assert limit_lines(out) == [
        "lifetime limit: none (no limit on total lifetime)",
        "idle limit: destroyed after 900.5 s (15 min) with no connection open to port 10022",
    ]
    out = create({"container_max_lifetime": None, "container_max_idle_time": None})
    assert limit_lines(out) == [
        "lifetime limit: none (no limit on total lifetime)",
        "idle limit: none (kept however long it goes unused)",
    ]


def test_older_server_without_the_keys_prints_as_before(create):
    out = create({})
    assert limit_lines(out) == []
    assert "expire" not in out and "idle" not in out


def test_one_key_alone_prints_only_its_line(create):
    assert limit_lines(create({"container_max_idle_time": 60})) == [
        "idle limit: destroyed after 60 s (1 min) with no connection open to port 10022"
    ]


def test_unexpected_values_are_shown_not_fatal(create):
    out = create({"container_max_lifetime": "soon", "container_max_idle_time": True})
    assert limit_lines(out) == [
        "lifetime limit: not understood (container_max_lifetime: 'soon')",
        "idle limit: not understood (container_max_idle_time: True)",
    ]


def test_json_passes_the_response_through(create):
    extra = {"container_max_lifetime": None, "container_max_idle_time": 3600}
    out = create(extra, "--json")
    assert json.loads(out) == {"success": True, "message": "OK", "data": {**CREATE_DATA, **extra}}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "0.5 s"),
        (59, "59 s"),
        (60, "60 s (1 min)"),
        (90, "90 s (1 min 30 s)"),
        (3600.0, "3600 s (1 h)"),
        (86400 + 3600 + 61, "90061 s (1 d 1 h 1 min 1 s)"),
        (604801, "604801 s (7 d 1 s)"),
    ],
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_expiry_lines_without_a_port():
    assert expiry_lines({"container_max_idle_time": 10}) == [
        "idle limit: destroyed after 10 s with no connection open to the SSH port"
    ]


@pytest.mark.parametrize("value", [0, -5, float("inf"), float("nan")])
def test_expiry_lines_refuse_non_positive_or_infinite(value):
    assert expiry_lines({"container_max_lifetime": value})[0].startswith(
        "lifetime limit: not understood"
    )
