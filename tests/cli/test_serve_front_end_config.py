"""``serve``, ``config check`` and ``check`` with ``server.front_end``, run as an
administrator runs them (child processes, files under tmp_path, libvirt's test driver):
a name with a SQLite journal is refused in one line naming ``server.front_end`` before
anything opens, and a named front end on a PostgreSQL journal says so at start."""

from __future__ import annotations

import re

from commands import ServeChild, run_command, write_test_driver_config

# Nothing listens there: every refusal below comes before the journal is opened.
UNREACHED = "postgresql://anweddol:secret@127.0.0.1:9/anweddol"

REFUSAL = (
    "server.front_end: front ends share a PostgreSQL journal: {source} must be a "
    "postgresql://user@host:port/dbname URL, not a SQLite file"
)


def refused(result) -> str:
    """The one line a refused command prints last, exit status 2, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr.splitlines()[-1]


def named(folder, database: str | None = None):
    """The test-driver configuration with ``front_end: {name: one}`` (its journal a SQLite
    file in ``folder`` unless ``database`` is given)."""
    config = write_test_driver_config(
        folder,
        server=f"  admin_socket_path: '{folder}/admin.sock'\n"
        "  front_end:\n"
        "    name: one\n"
        "    lease: 9\n",
    )
    if database is not None:
        text = re.sub(r"  database: .*\n", f"  database: '{database}'\n", config.read_text())
        config.write_text(text)
    return config


def test_a_name_with_a_sqlite_journal_stops_serve_and_the_checks(tmp_path):
    config = named(tmp_path)
    expected = f"error: {config}: " + REFUSAL.format(source="server.database")
    assert refused(run_command("serve", "-c", str(config), "--port", "0")) == expected
    assert refused(run_command("config", "check", "-c", str(config))) == expected
    assert refused(run_command("check", "-c", str(config))) == expected
    # Refused before anything was made: no journal, no key, no admin socket.
    assert not (tmp_path / "journal.sqlite3").exists()
    assert not (tmp_path / "rsa").exists()
    assert not (tmp_path / "admin.sock").exists()


def test_a_sqlite_database_flag_under_a_name_is_refused(tmp_path):
    config = named(tmp_path, database=UNREACHED)
    journal = tmp_path / "flag.sqlite3"
    result = run_command("serve", "-c", str(config), "--port", "0", "--database", str(journal))
    assert refused(result) == "error: " + REFUSAL.format(source="--database")
    assert "secret" not in result.stderr  # the file's URL, password and all, is not shown
    assert not journal.exists()
    assert not (tmp_path / "rsa").exists()


def test_a_named_front_end_on_postgresql_says_so_at_start(tmp_path, pg_url):
    config = named(tmp_path, database=pg_url)
    server = ServeChild("-c", str(config), "--port", "0")
    try:
        line = server.wait_for_line(r"front end one: journal .* shared, lease 9 s$")
        # The URL as the journal shows it: without its password.
        assert pg_url.split("@")[1] in line.string
        assert pg_url.split("//")[1].split("@")[0].split(":")[1] not in line.string
        server.wait_for_line(r"serving on 127\.0\.0\.1:\d+")
    finally:
        assert server.stop() == 0, server.log
