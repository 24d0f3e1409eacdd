"""``config show | init | check`` and the place a command looks for its file, run as an
administrator runs them (a subprocess; files under tmp_path; never /etc)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from commands import run_command

from anweddol_actors.config import dump_default, load_config
from anweddol_actors.hypervisor.kvm import local_kvm_usable

REFERENCE_CONFIG = next(
    (
        folder / "shared/reference/config.yaml"
        for folder in Path(__file__).resolve().parents[2:]
        if (folder / "shared/reference/config.yaml").exists()
    ),
    Path("shared/reference/config.yaml"),
)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_command(*args, env=env)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    return line


@pytest.fixture
def original(tmp_path) -> Path:
    """The original's file, with what this host lacks put right: its ISO, kvm, and its
    user `anweddol` (this host has `nobody`)."""
    if not REFERENCE_CONFIG.exists():
        pytest.skip("reference config.yaml not available")
    iso = tmp_path / "anweddol_container.iso"
    iso.write_bytes(b"stand-in")
    text = REFERENCE_CONFIG.read_text()
    text = text.replace("/etc/anweddol/iso/anweddol_container.iso", str(iso))
    text = text.replace("domain_type: kvm", "domain_type: auto")
    text = text.replace("  user: anweddol", "  user: nobody")
    path = tmp_path / "original.yaml"
    path.write_text(text)
    return path


def test_init_then_check_round_trip(tmp_path):
    path = tmp_path / "etc" / "anweddol_actors" / "config.yaml"
    result = cli("config", "init", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote {path}\n"
    assert path.read_text() == dump_default()
    assert load_config(path) == load_config(None)
    result = cli("config", "check", "-c", str(path))
    assert result.returncode == 0, result.stderr
    # The default file gives no warning: keys kept only for the original are commented.
    assert result.stdout == f"ok: {path}\n"


def test_init_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("server: {listen_port: 7000}\n")
    line = one_line_error(cli("config", "init", str(path)))
    assert line == f"error: {path} already exists (--force to overwrite it)"
    assert path.read_text() == "server: {listen_port: 7000}\n"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    result = cli("config", "init", str(path), "--force", "--json")
    assert json.loads(result.stdout) == {
        "status": "OK",
        "message": "Configuration file written",
        "data": {"path": str(path)},
    }
    assert path.read_text() == dump_default()


def test_init_to_stdout_and_to_the_system_path(tmp_path):
    assert cli("config", "init", "-").stdout == dump_default()
    system = tmp_path / "system" / "config.yaml"
    result = cli("config", "init", env={"ANWEDDOL_ACTORS_CONFIG": str(system)})
    assert result.returncode == 0 and system.read_text() == dump_default()


def test_check_prints_source_and_each_warning(original):
    result = cli("config", "check", "-c", str(original))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"ok: {original}"
    assert [line.split(" ", 2)[1] for line in lines[1:]] == [
        "container.nat_interface_name",
        "container.wait_max_tryout",
        "web_server.log_file_path,",
    ]
    assert all(line.startswith("warning: ") for line in lines[1:])
    document = json.loads(cli("config", "check", "-c", str(original), "--json").stdout)
    assert document["status"] == "OK" and document["message"] == "Check done"
    assert document["data"]["errors_recorded"] == 0 and document["data"]["errors_list"] == []
    assert document["data"]["source"] == str(original)
    assert len(document["data"]["warnings"]) == 3


def test_check_of_a_bad_file_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("container:\n  container_memory: lots\n")
    line = one_line_error(cli("config", "check", "-c", str(path)))
    assert line == f"error: {path}: container.container_memory: must be of integer type"
    result = cli("config", "check", "-c", str(path), "--json")
    assert result.returncode == 2
    assert json.loads(result.stdout) == {
        "status": "ERROR",
        "message": "Errors detected on server environment",
        "data": {"errors_recorded": 1, "errors_list": [line.removeprefix("error: ")]},
    }
    one_line_error(cli("config", "check", "-c", str(tmp_path / "absent.yaml")))


def test_check_names_what_this_host_cannot_honour(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(f"container:\n  container_iso_file_path: {tmp_path}/none.iso\n")
    line = one_line_error(cli("config", "check", "-c", str(path)))
    assert line == (
        f"error: {path}: container.container_iso_file_path: {tmp_path}/none.iso: no such file"
    )


@pytest.mark.skipif(local_kvm_usable()[0], reason="KVM works on this host")
def test_kvm_where_unusable_is_refused_by_check_and_serve(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "container: {domain_type: kvm}\n"
        f"server: {{database: '{tmp_path}/journal.sqlite3', bind_address: 127.0.0.1}}\n"
    )
    expected = f"error: {path}: container.domain_type: kvm is not usable on this host ("
    assert one_line_error(cli("config", "check", "-c", str(path))).startswith(expected)
    result = cli("serve", "-c", str(path), "--port", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(expected)
    assert not (tmp_path / "journal.sqlite3").exists()  # refused before anything opened


def test_show_is_the_effective_configuration_and_loads_back(tmp_path, original):
    result = cli("config", "show", "-c", str(original))
    assert result.returncode == 0, result.stderr
    first, _, body = result.stdout.partition("\n")
    assert first == f"# configuration: {original}"
    shown = tmp_path / "shown.yaml"
    shown.write_text(result.stdout)
    assert load_config(shown) == load_config(original)
    document = yaml.safe_load(body)
    assert document["container"]["network_mode"] == "user"  # a default, filled in
    assert document["container"]["container_memory"] == 1024  # the file's value

    data = json.loads(cli("config", "show", "-c", str(original), "--json").stdout)
    assert data["status"] == "OK" and data["message"] == "Effective configuration"
    assert data["data"]["source"] == str(original)
    assert data["data"]["config"] == load_config(original).to_dict()
    assert len(data["data"]["warnings"]) == 3


def test_environment_names_the_system_file_when_it_exists(tmp_path):
    path = tmp_path / "elsewhere.yaml"
    path.write_text("server: {listen_port: 7001}\n")
    result = cli("config", "show", env={"ANWEDDOL_ACTORS_CONFIG": str(path)})
    assert result.stdout.startswith(f"# configuration: {path}\n")
    assert yaml.safe_load(result.stdout)["server"]["listen_port"] == 7001
    # An explicit -c wins over it.
    other = tmp_path / "other.yaml"
    other.write_text("server: {listen_port: 7002}\n")
    result = cli("config", "show", "-c", str(other), env={"ANWEDDOL_ACTORS_CONFIG": str(path)})
    assert yaml.safe_load(result.stdout)["server"]["listen_port"] == 7002
    # Absent: ignored, the embedded default (unlike -c, which must exist).
    absent = tmp_path / "absent.yaml"
    result = cli("config", "show", env={"ANWEDDOL_ACTORS_CONFIG": str(absent)})
    assert result.stdout.startswith(f"# configuration: embedded default (no {absent})\n")
    assert yaml.safe_load(result.stdout)["server"]["listen_port"] == 6150


def test_a_copy_of_show_loads_back_without_warnings(tmp_path):
    # Keys accepted only so that the original's files load are not shown unless the file
    # set them: a copy of `config show` must not warn about keys nobody wrote.
    shown = tmp_path / "shown.yaml"
    result = cli("config", "show")
    assert result.returncode == 0, result.stderr
    shown.write_text(result.stdout)
    document = yaml.safe_load(result.stdout)
    assert "wait_max_tryout" not in document["container"]
    assert "enabled" in document["web_server"] and "user" not in document["web_server"]
    checked = cli("config", "check", "-c", str(shown))
    assert (checked.returncode, checked.stdout) == (0, f"ok: {shown}\n")
    assert load_config(shown) == load_config(None)


def test_check_refuses_a_server_user_this_host_does_not_have(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("server:\n  user: no-such-user-anweddol\n")
    line = one_line_error(cli("config", "check", "-c", str(path)))
    assert line == f"error: {path}: server.user: no such user 'no-such-user-anweddol'"
    path.write_text("server:\n  user: nobody\n")
    assert cli("config", "check", "-c", str(path)).returncode == 0
