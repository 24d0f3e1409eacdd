"""``serve`` and ``config check`` with a ``hypervisors:`` list and database URLs, run as an
administrator runs them (child processes, files under tmp_path, libvirt's test driver)."""

from __future__ import annotations

from pathlib import Path

from commands import ServeChild, run_command, write_test_driver_config

from anweddol_actors.cli.serve import journal_path

POSTGRESQL = "postgresql://anweddol:secret@127.0.0.1:5432/anweddol"


def refused(result) -> str:
    """The one line a refused command prints last, exit status 2, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr.splitlines()[-1]


def hosts_config(folder: Path, hosts: str) -> Path:
    return write_test_driver_config(
        folder,
        server=f"  admin_socket_path: '{folder}/admin.sock'\n",
        sections=f"hypervisors:\n{hosts}",
    )


def test_serve_refuses_a_local_hosts_missing_iso_naming_its_key(tmp_path):
    config = hosts_config(
        tmp_path,
        "  - {name: one, libvirt_uri: 'test:///default', address: 127.0.0.1, max_containers: 1,\n"
        f"     container_iso_file_path: '{tmp_path}/missing.iso'}}\n",
    )
    line = refused(run_command("serve", "-c", str(config), "--port", "0"))
    assert line == (
        f"error: hypervisors[0].container_iso_file_path: container ISO {tmp_path}/missing.iso "
        "of host one is missing or unreadable"
    )
    assert not (tmp_path / "journal.sqlite3").exists()  # refused before the journal opened
    line = refused(run_command("config", "check", "-c", str(config)))
    assert line == (
        f"error: {config}: hypervisors[0].container_iso_file_path: {tmp_path}/missing.iso: "
        "no such file"
    )


def test_a_bad_entry_stops_serve_and_check_in_one_line(tmp_path):
    config = hosts_config(
        tmp_path,
        "  - {name: one, libvirt_uri: 'test:///default', address: 127.0.0.1, max_containers: 1}\n"
        "  - {name: two, libvirt_uri: 'test:///default', address: 10.0.0.x, max_containers: 1}\n",
    )
    expected = f"error: {config}: hypervisors[1].address: '10.0.0.x' is not an IP address"
    assert refused(run_command("serve", "-c", str(config), "--port", "0")) == expected
    assert refused(run_command("config", "check", "-c", str(config))) == expected


def test_serve_database_flag_takes_what_the_file_takes(tmp_path):
    config = write_test_driver_config(tmp_path)
    line = refused(run_command("serve", "-c", str(config), "--port", "0", "--database", "x://y"))
    assert line == (
        "error: --database: unsupported database URL scheme 'x': must be a SQLite file path, "
        "sqlite:///PATH, or postgresql://user@host:port/dbname"
    )
    assert not (tmp_path / "journal.sqlite3").exists()


def test_a_database_url_is_no_file_to_hand_over():
    # serve gives server.user the journal's file and folder: a URL has none.
    assert journal_path(POSTGRESQL) is None
    assert journal_path("/var/lib/anweddol_actors/journal.sqlite3") == Path(
        "/var/lib/anweddol_actors/journal.sqlite3"
    )


def test_serve_with_hosts_says_which_isos_it_did_not_check(tmp_path):
    config = hosts_config(
        tmp_path,
        "  - {name: one, libvirt_uri: 'test:///default', address: 127.0.0.1, max_containers: 1}\n"
        # Nothing listens there (nothing is placed in this test): a remote URI, whose ISO
        # is on its own disk.
        "  - {name: far, libvirt_uri: 'qemu+tcp://127.0.0.1:9/system', address: 127.0.0.1,\n"
        "     max_containers: 1, domain_type: qemu,\n"
        "     container_iso_file_path: /only/on/far/anweddol.iso}\n",
    )
    server = ServeChild("-c", str(config), "--port", "0")
    try:
        server.wait_for_line(r"serving on 127\.0\.0\.1:\d+")
        server.wait_for_line(
            r"host one: test:///default, guest ports on 127\.0\.0\.1, containers at most 1$"
        )
        server.wait_for_line(
            r"WARNING .*host far \(qemu\+tcp://127\.0\.0\.1:9/system\): ISO "
            r"/only/on/far/anweddol\.iso not checked \(on that host's disk\), and this machine "
            r"has no copy"
        )
        # Host one boots the container section's ISO, on this machine: checked, not logged.
        assert "host one (" not in server.log
    finally:
        assert server.stop() == 0, server.log


def test_check_reaches_each_host(tmp_path):
    config = hosts_config(
        tmp_path,
        "  - {name: one, libvirt_uri: 'test:///default', address: 127.0.0.1, max_containers: 1}\n"
        "  - {name: far, libvirt_uri: 'qemu+tcp://127.0.0.1:9/system', address: 127.0.0.1,\n"
        "     max_containers: 1}\n",
    )
    result = run_command("check", "-c", str(config))
    assert result.returncode == 1, result.stdout
    lines = result.stdout.splitlines()
    assert "[ok  ] libvirt (one): test:///default answers" in lines
    assert "[ok  ] domain type (one): test" in lines
    (far,) = [line for line in lines if line.startswith("[FAIL] libvirt (far): ")]
    assert "127.0.0.1:9" in far and "scripts/start-libvirt" not in far
    # --uri checks that URI alone, as without a list.
    result = run_command("check", "-c", str(config), "--uri", "test:///default")
    assert "[ok  ] libvirt: test:///default answers" in result.stdout.splitlines()
    assert "(far)" not in result.stdout
