"""Every subcommand is listed by --help and has a --help of its own."""

from __future__ import annotations

import subprocess
import sys

import pytest

from anweddol_actors.cli import SUBCOMMANDS


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "anweddol_actors", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_top_level_help_lists_every_subcommand():
    result = run("--help")
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert f"    {name}" in result.stdout, name


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name):
    result = run(name, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m anweddol_actors " + name)


def test_no_subcommand_prints_help_and_fails():
    result = run()
    assert result.returncode == 2 and "COMMAND" in result.stdout


def test_unknown_subcommand_is_a_one_line_error():
    result = run("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
