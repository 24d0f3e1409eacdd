"""``server.front_end``: this server's name and lease among the front ends of one
PostgreSQL journal. What a file says, the engine ``Settings`` serve builds from it, one
line naming the key for every bad value, and the refusal of a name with a SQLite
journal."""

from __future__ import annotations

import re

import pytest
import yaml
from configerrors import error_of

from anweddol_actors.cli.serve import changed_keys, settings_from_config
from anweddol_actors.config import (
    DEFAULT_CONFIG_YAML,
    FrontEndConfig,
    load_config,
    parse_config,
)
from anweddol_actors.config.schema import front_end_problem
from anweddol_actors.engine.settings import Settings

POSTGRESQL = "postgresql://anweddol:secret@db.example.net:5432/anweddol"

SQLITE_REFUSED = (
    "server.front_end: front ends share a PostgreSQL journal: server.database must be a "
    "postgresql://user@host:port/dbname URL, not a SQLite file"
)


def front_end(database: str = POSTGRESQL, **keys) -> str:
    """A server section naming a front end: ``name: one`` with ``keys`` changed
    (``...``: the key left out)."""
    entry = {"name": "one", **keys}
    entry = {key: value for key, value in entry.items() if value is not ...}
    return yaml.safe_dump({"server": {"database": database, "front_end": entry}})


def test_a_name_and_a_lease_map_to_the_engine_settings():
    config = parse_config(front_end(name="one", lease=12))
    assert config.server.front_end == FrontEndConfig(name="one", lease=12.0)
    assert type(config.server.front_end.lease) is float
    settings = settings_from_config(config)
    assert (settings.front_end, settings.front_end_lease) == ("one", 12.0)
    assert settings.database == POSTGRESQL


def test_the_lease_defaults_to_30_seconds():
    config = parse_config(front_end(lease=...))
    assert config.server.front_end == FrontEndConfig(name="one", lease=30.0)
    assert settings_from_config(config).front_end_lease == 30.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "server:\n",
        "server: {front_end: null}",
        "server:\n  front_end:\n",  # its keys all commented out
        f"server: {{database: '{POSTGRESQL}'}}",
    ],
)
def test_no_name_is_the_single_front_end_of_before(text):
    config = parse_config(text)
    assert config.server.front_end is None
    settings = settings_from_config(config)
    assert (settings.front_end, settings.front_end_lease) == (None, 30.0)
    # Exactly the engine's defaults: the settings of a server before front ends existed.
    assert (Settings().front_end, Settings().front_end_lease) == (None, 30.0)


def test_names_and_leases_at_the_limits_are_accepted():
    for name in ("a", "A.b_c-9", "x" * 48):
        assert parse_config(front_end(name=name)).server.front_end.name == name
    for lease in (3, 3.0, 3.5, 86400):
        assert parse_config(front_end(lease=lease)).server.front_end.lease == float(lease)
    # Every spelling of a PostgreSQL URL the journal opens.
    for url in ("postgres://u@h/db", "postgresql://u@h:5433/db", "postgresql://u:p@h/db"):
        assert parse_config(front_end(database=url)).server.front_end.name == "one"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (front_end(name=...), "server.front_end.name: is required"),
        (front_end(name=""), "server.front_end.name: must not be empty"),
        (front_end(name=None), "server.front_end.name: must not be null"),
        (front_end(name=7), "server.front_end.name: must be of string type"),
        (
            front_end(name="front 1"),
            "server.front_end.name: must be 1 to 48 letters, digits, '_', '.' or '-' "
            "(got 'front 1')",
        ),
        (
            front_end(name="x" * 49),
            f"server.front_end.name: must be 1 to 48 letters, digits, '_', '.' or '-' "
            f"(got '{'x' * 49}')",
        ),
        (
            front_end(name="one/two"),
            "server.front_end.name: must be 1 to 48 letters, digits, '_', '.' or '-' "
            "(got 'one/two')",
        ),
        (
            front_end(lease=2.9),
            "server.front_end.lease: must be a number of seconds, at least 3 (got 2.9)",
        ),
        (front_end(lease=0), "server.front_end.lease: must be a number of seconds, at least 3"),
        (front_end(lease=-30), "server.front_end.lease: must be a number of seconds, at least 3"),
        (
            front_end(lease=float("inf")),
            "server.front_end.lease: must be a number of seconds, at least 3 (got inf)",
        ),
        (
            front_end(lease=float("nan")),
            "server.front_end.lease: must be a number of seconds, at least 3 (got nan)",
        ),
        (front_end(lease=None), "server.front_end.lease: must not be null"),
        (front_end(lease=True), "server.front_end.lease: must be of number type"),
        (front_end(lease="30s"), "server.front_end.lease: must be of number type"),
        (
            front_end(leas=30),
            "server.front_end.leas: unknown key (did you mean 'lease'?)",
        ),
        (front_end(zone="a"), "server.front_end.zone: unknown key (known: name, lease)"),
        (
            f"server: {{database: '{POSTGRESQL}', front_end: one}}",
            "server.front_end: must be a mapping of keys",
        ),
        (
            f"server: {{database: '{POSTGRESQL}', front_end: [one]}}",
            "server.front_end: must be a mapping of keys",
        ),
        (
            f"server: {{database: '{POSTGRESQL}', front_end: {{}}}}",
            "server.front_end.name: is required",
        ),
        (
            f"server: {{database: '{POSTGRESQL}', frontend: {{name: one}}}}",
            "server.frontend: unknown key (did you mean 'front_end'?)",
        ),
    ],
)
def test_every_bad_value_is_one_line_naming_the_key(text, expected):
    assert error_of(text).startswith(f"config.yaml: {expected}")


@pytest.mark.parametrize(
    "database",
    [
        "/var/lib/anweddol_actors/journal.sqlite3",
        "journal.sqlite3",
        "sqlite:////var/lib/anweddol_actors/journal.sqlite3",
    ],
)
def test_a_name_with_a_sqlite_journal_is_refused_naming_server_front_end(database):
    assert error_of(front_end(database=database)) == f"config.yaml: {SQLITE_REFUSED}"


def test_a_name_with_the_default_journal_is_refused():
    text = "server:\n  front_end:\n    name: one\n"
    assert error_of(text) == f"config.yaml: {SQLITE_REFUSED}"


def test_the_refusal_never_repeats_the_database():
    # A URL may hold a password; the message names the key, not its value.
    assert front_end_problem({"name": "one"}, POSTGRESQL) is None
    assert front_end_problem(None, "/x/journal.sqlite3") is None
    problem = front_end_problem({"name": "one"}, "/secret/place.sqlite3", "--database")
    assert problem is not None and "secret" not in problem
    assert problem.startswith("front ends share a PostgreSQL journal: --database must be ")


def test_a_bad_value_and_the_sqlite_refusal_report_the_schema_first():
    # The schema's problem is reported (the name), the cross-key one only once it passes.
    message = error_of(front_end(database="/x.sqlite3", name="a b"))
    assert message.startswith("config.yaml: server.front_end.name: must be 1 to 48 ")


def test_to_dict_round_trips_through_yaml():
    config = parse_config(front_end(name="edge-2", lease=9))
    plain = config.to_dict()
    assert plain["server"]["front_end"] == {"name": "edge-2", "lease": 9.0}
    assert parse_config(yaml.safe_dump(plain)) == config
    none = load_config(None).to_dict()
    assert none["server"]["front_end"] is None
    assert parse_config(yaml.safe_dump(none)) == load_config(None)


def test_a_changed_name_or_lease_needs_a_restart():
    before = parse_config(front_end(name="one", lease=30))
    for after in (front_end(name="two", lease=30), front_end(name="one", lease=60)):
        assert changed_keys(before, parse_config(after)) == ["server.front_end"]
    assert changed_keys(before, parse_config(front_end(name="one"))) == []


def test_the_shipped_example_loads_once_uncommented():
    # default.yaml says null, and shows the mapping commented out just above.
    assert load_config(None).server.front_end is None
    assert re.search(r"^  front_end: null$", DEFAULT_CONFIG_YAML, re.MULTILINE)
    start = DEFAULT_CONFIG_YAML.index("  #   front_end:\n")
    end = DEFAULT_CONFIG_YAML.index("  front_end: null")
    example = re.sub(r"^  # ", "", DEFAULT_CONFIG_YAML[start:end], flags=re.MULTILINE)
    config = parse_config(f"server:\n  database: '{POSTGRESQL}'\n{example}", "example")
    assert config.server.front_end == FrontEndConfig(name="one", lease=30.0)
