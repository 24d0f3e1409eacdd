"""``serve``, ``config check`` and ``check`` with ``server.front_end``, run as an
administrator runs them (child processes, files under tmp_path, libvirt's test driver):
a name with a SQLite journal is refused in one line naming ``server.front_end`` before
anything opens, and a named front end on a PostgreSQL journal says so at start."""

from __future__ import annotations

import re
import time

from commands import ServeChild, run_command, write_test_driver_config

from anweddol_actors.journal import Journal

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


def test_a_front_end_still_being_taken_over_is_refused_in_one_line(tmp_path, pg_url):
    # two holds a takeover of one that does not end (as if two were busy ending one's
    # containers for longer than one's lease): one's serve tries for a lease, then stops.
    with Journal(pg_url, front_end="two") as two, Journal(pg_url, front_end="one") as one:
        two.register_front_end("127.0.0.2:1", 120)
        one.register_front_end("127.0.0.1:1", 0.01)
        time.sleep(0.05)
        assert two.take_over("one")
        config = named(tmp_path, database=pg_url)
        text = config.read_text().replace("    lease: 9\n", "    lease: 3\n")
        config.write_text(text)
        line = refused(run_command("serve", "-c", str(config), "--port", "0", timeout=120))
    assert line == (
        "error: cannot start: front end one is being taken over by front end two, which is "
        "ending its containers: start it again once that is done"
    )
