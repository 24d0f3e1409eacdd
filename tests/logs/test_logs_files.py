"""The log file itself: formats, rotation (archive, delete, lines already there), reopen
after a move, and logging that goes on when the disk or the archive folder fails."""

from __future__ import annotations

import json
import logging
import os
import stat
import zipfile

import pytest

from anweddol_actors.logs import LogError, Rotation, configure, reopen

log = logging.getLogger("tests.logs")


def lines(path) -> list[str]:
    return path.read_text().splitlines()


def messages(path) -> list[str]:
    """The messages of a text log's lines."""
    return [line.split(": ", 1)[1] for line in lines(path)]


def archived(folder) -> list[list[str]]:
    """The messages held by each zip of ``folder``, oldest first."""
    held = []
    for name in sorted(os.listdir(folder)):
        assert name.startswith("archived_") and name.endswith(".zip"), name
        with zipfile.ZipFile(folder / name) as bundle:
            [member] = bundle.namelist()
            text = bundle.read(member).decode()
        held.append([line.split(": ", 1)[1] for line in text.splitlines()])
    return held


def test_file_created_with_its_folder_owner_and_group_only(tmp_path, clean_logging):
    path = tmp_path / "var" / "log" / "server.log"
    configure("INFO", str(path), "text", None)
    log.info("hello")
    assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0
    assert messages(path) == ["hello"]


def test_text_lines_carry_request_fields_as_words(tmp_path, clean_logging):
    path = tmp_path / "server.log"
    configure("INFO", str(path), "text", None)
    log.info(
        "odd",
        extra={
            "connection": "0123456789abcdef" * 2,
            "client": "127.0.0.1",
            "verb": 'a b="c"\nforged=1',
            "container": None,
            "outcome": "Bad request",
            "duration_ms": 1.25,
        },
    )
    [line] = lines(path)
    assert line.endswith(
        r' connection=01234567 client=127.0.0.1 verb="a b=\"c\"\nforged=1" container=-'
        ' outcome="Bad request" duration_ms=1.2'
    ), line


def test_json_lines(tmp_path, clean_logging):
    path = tmp_path / "server.log"
    configure("DEBUG", str(path), "json", None)
    log.debug("plain %s", "message")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("it failed")
    log.info("a request", extra={"verb": "STAT", "duration_ms": 2.5})
    first, second, third = (json.loads(line) for line in lines(path))
    assert first["message"] == "plain message" and first["level"] == "DEBUG"
    assert first["logger"] == "tests.logs"
    assert first["time"].endswith("Z") and first["time"][10] == "T"
    assert "verb" not in first and "exc" not in first
    assert second["level"] == "ERROR"
    assert "Traceback" in second["exc"] and "RuntimeError: boom" in second["exc"]
    assert third["verb"] == "STAT" and third["duration_ms"] == 2.5


def test_configure_again_replaces_the_handler(tmp_path, clean_logging):
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    configure("INFO", str(first), "text", None)
    log.info("one")
    configure("INFO", str(second), "json", None)
    log.info("two")
    assert messages(first) == ["one"]
    assert [json.loads(line)["message"] for line in lines(second)] == ["two"]
    ours = [h for h in logging.getLogger().handlers if type(h).__module__.startswith("anweddol")]
    assert len(ours) == 1


def test_transitions_kept_at_warning(tmp_path, clean_logging):
    configure("DEBUG", str(tmp_path / "server.log"), "text", None)
    assert logging.getLogger("transitions").level == logging.WARNING


@pytest.mark.parametrize(
    "arguments, problem",
    [
        (("LOUD", None, "text", None), "log level"),
        (("INFO", None, "xml", None), "log format"),
    ],
)
def test_bad_arguments_are_log_errors(arguments, problem, clean_logging):
    with pytest.raises(LogError, match=problem):
        configure(*arguments)


def test_unusable_file_is_a_log_error(tmp_path, clean_logging):
    (tmp_path / "plain").write_text("a file, not a folder")
    with pytest.raises(LogError, match="cannot open the log file"):
        configure("INFO", str(tmp_path / "plain" / "server.log"), "text", None)


def test_rotation_archive(tmp_path, clean_logging):
    path, folder = tmp_path / "server.log", tmp_path / "archived"
    configure("INFO", str(path), "text", Rotation(5, "archive", str(folder)))
    for n in range(12):
        log.info("line %d", n)
    assert archived(folder) == [
        [f"line {n}" for n in range(5)],
        [f"line {n}" for n in range(5, 10)],
    ]
    assert messages(path) == ["line 10", "line 11"]
    for name in os.listdir(folder):
        assert stat.S_IMODE((folder / name).stat().st_mode) & 0o007 == 0


def test_rotation_delete(tmp_path, clean_logging):
    path = tmp_path / "server.log"
    configure("INFO", str(path), "text", Rotation(5, "delete"))
    for n in range(12):
        log.info("line %d", n)
    assert messages(path) == ["line 10", "line 11"]
    assert os.listdir(tmp_path) == ["server.log"]


def test_rotation_counts_the_lines_already_there(tmp_path, clean_logging):
    path, folder = tmp_path / "server.log", tmp_path / "archived"
    path.write_text("".join(f"x INFO old: before {n}\n" for n in range(4)))
    configure("INFO", str(path), "text", Rotation(5, "archive", str(folder)))
    log.info("new 0")
    assert not folder.exists()
    log.info("new 1")
    assert archived(folder) == [[f"before {n}" for n in range(4)] + ["new 0"]]
    assert messages(path) == ["new 1"]


def test_rotation_does_nothing_on_stderr(tmp_path, clean_logging, capfd):
    configure("INFO", None, "text", Rotation(1, "archive", str(tmp_path / "archived")))
    for n in range(3):
        log.info("to stderr %d", n)
    assert reopen() == 0
    assert "to stderr 2" in capfd.readouterr().err
    assert not (tmp_path / "archived").exists()


def test_reopen_after_the_file_was_moved(tmp_path, clean_logging):
    path, moved = tmp_path / "server.log", tmp_path / "server.log.1"
    configure("INFO", str(path), "text", None)
    log.info("before the move")
    os.rename(path, moved)
    assert reopen() == 1
    assert path.exists()
    log.info("after the move")
    assert messages(moved) == ["before the move"]
    assert messages(path) == ["after the move"]


def test_unwritable_archive_folder_does_not_raise(tmp_path, clean_logging, capfd):
    path = tmp_path / "server.log"
    (tmp_path / "plain").write_text("a file, not a folder")
    folder = tmp_path / "plain" / "archived"
    configure("INFO", str(path), "text", Rotation(3, "archive", str(folder)))
    for n in range(8):
        log.info("line %d", n)
    # The file keeps every line; the two failed rotations are reported once.
    assert messages(path) == [f"line {n}" for n in range(8)]
    reports = [line for line in capfd.readouterr().err.splitlines() if "logging problem" in line]
    assert len(reports) == 1, reports
    assert "cannot rotate" in reports[0]


def test_full_disk_does_not_raise(clean_logging, capfd):
    configure("INFO", "/dev/full", "text", None)
    for n in range(5):
        log.info("lost %d", n)
    reports = [line for line in capfd.readouterr().err.splitlines() if "logging problem" in line]
    assert len(reports) == 1, reports
    assert "No space left" in reports[0]


def test_rotation_of_a_device_does_nothing(clean_logging, capfd):
    # /dev/full reads as endless zeros: counting its lines would never end.
    configure("INFO", "/dev/full", "text", Rotation(2, "delete"))
    for n in range(4):
        log.info("lost %d", n)
    reports = [line for line in capfd.readouterr().err.splitlines() if "logging problem" in line]
    assert len(reports) == 1 and "No space left" in reports[0], reports
