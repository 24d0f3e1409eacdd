"""A file written for the original: which keys warn, which values work, which are refused
with one line naming the key (never a traceback)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from test_config_loading import REFERENCE_CONFIG  # noqa: E402 - the one place that finds it

from anweddol_actors.config import (
    ConfigError,
    config_from_mapping,
    dump_default,
    parse_config,
    read_config,
)
from anweddol_actors.config.host import domain_type_problem, file_problems
from anweddol_actors.config.schema import SECTIONS
from anweddol_actors.hypervisor.kvm import local_kvm_usable


def warnings_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return list(read_config(path).warnings)


@pytest.fixture
def original(tmp_path) -> Path:
    if not REFERENCE_CONFIG.exists():
        pytest.skip("reference config.yaml not available")
    path = tmp_path / "config.yaml"
    path.write_text(REFERENCE_CONFIG.read_text())
    return path


def test_original_file_gives_exactly_its_warnings(original):
    loaded = read_config(original)
    assert loaded.warnings == (
        "container.nat_interface_name (virbr0) is set without container.network_mode: "
        "guests use QEMU's user networking (no bridge), not the NAT bridge virbr0; add "
        "'network_mode: nat' to the container section to keep the original's bridge",
        "container.wait_max_tryout is not acted on: the wait for a new guest (its address "
        "in nat mode, then its SSH server) is bounded by container.ready_timeout instead "
        "(120 s)",
        "web_server.log_file_path, web_server.pid_file_path, web_server.user: not acted on: "
        "the web server runs inside serve's process, which uses server.log_file_path, "
        "server.pid_file_path and server.user",
    )
    assert "server.timeout" in loaded.given and "container.network_mode" not in loaded.given


def test_original_values_keep_their_meaning(original):
    config = read_config(original).config
    assert config.server.timeout == 10.0
    assert config.server.enable_onetime_rsa_keys is False
    assert config.container.max_allowed_running_container_domains == 6
    assert config.server.private_rsa_key_file_path == "/etc/anweddol/rsa/private.pem"
    assert config.log_rotation.enabled is True


def test_embedded_default_and_the_default_file_give_no_warning(tmp_path):
    assert read_config(None).warnings == ()
    assert read_config(None).given == ()
    assert warnings_of(tmp_path, dump_default()) == []


@pytest.mark.parametrize(
    "text",
    [
        # Acted on by the service and log commands: never warned about.
        "server: {user: anweddol, pid_file_path: /run/a.pid, log_file_path: /var/log/a.txt}",
        "log_rotation: {enabled: true, log_archive_folder_path: /tmp/a, action: delete}",
        "log_rotation: {max_log_lines_amount: 10}",
        # nat_interface_name beside an explicit network_mode: the administrator chose.
        "container: {network_mode: nat, nat_interface_name: virbr1}",
        "container: {network_mode: user, nat_interface_name: virbr0}",
        # Keys that work as they did.
        "container: {container_memory: 1024, container_vcpus: 2, domain_type: qemu}",
        "server: {timeout: null, enable_onetime_rsa_keys: False}",
        "web_server:\n",
        # The web server's own keys are acted on.
        "web_server: {enabled: true, listen_port: 8443, enable_metrics: true}",
    ],
)
def test_keys_that_need_no_warning(tmp_path, text):
    assert warnings_of(tmp_path, text) == []


def test_only_the_keys_the_file_sets_are_named(tmp_path):
    (line,) = warnings_of(tmp_path, "web_server: {user: www, listen_port: 8443}\n")
    assert line.startswith("web_server.user: not acted on")
    (line,) = warnings_of(tmp_path, "container: {wait_max_tryout: 5, ready_timeout: 30}\n")
    assert line.endswith("bounded by container.ready_timeout instead (30 s)")
    (line,) = warnings_of(tmp_path, "container: {nat_interface_name: br7}\n")
    assert "(br7)" in line and "network_mode: nat" in line


def test_timeout_null_means_no_per_wait_timeout():
    assert parse_config("server: {timeout: null}").server.timeout is None
    assert parse_config("server:\n  timeout:\n").server.timeout is None
    assert parse_config("server: {timeout: null}").server.request_deadline == 30.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server: {timeout: 0}", "server.timeout: must be a positive number of seconds, or null"),
        ("container: {ready_timeout: null}", "container.ready_timeout: must not be null"),
        ("server: {request_deadline: null}", "server.request_deadline: must not be null"),
        ("port_forwarding: {port_range: null}", "port_forwarding.port_range: must not be null"),
        (
            "container: {client_password_length: null}",
            "container.client_password_length: must not be null",
        ),
    ],
)
def test_refused_nulls_are_one_line(text, expected):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "config.yaml")
    assert str(info.value).startswith(f"config.yaml: {expected}")


ODD_VALUES = [None, "abc", "", True, 1.5, -1, 0, [], {}, [1], [1, 2, 3], ["x"], math.nan, "10"]


@pytest.mark.parametrize("section", list(SECTIONS))
def test_any_value_loads_or_is_one_config_error(section):
    # The original accepted some of these; every other one must be a ConfigError line
    # naming the key, never a TypeError from a check (null reached them once).
    for value in ODD_VALUES:
        for document in [{section: value}] + [{section: {k: value}} for k in SECTIONS[section]]:
            try:
                config_from_mapping(document, "config.yaml")
            except ConfigError as exc:
                assert "\n" not in str(exc)
                assert str(exc).startswith(f"config.yaml: {section}"), exc


def test_unlimited_containers_as_in_the_original():
    config = parse_config(
        "container: {max_allowed_running_container_domains: null}\n"
        "port_forwarding: {port_range: [10000, 10001]}\n"
    )
    assert config.container.max_allowed_running_container_domains is None


@pytest.mark.skipif(local_kvm_usable()[0], reason="KVM works on this host")
def test_kvm_where_it_is_unusable_is_refused_naming_the_key():
    problem = domain_type_problem(parse_config("container: {domain_type: kvm}"))
    assert problem.startswith("container.domain_type: kvm is not usable on this host (")
    assert problem.endswith("set it to auto (kvm where it works, else emulation) or qemu")


def test_kvm_is_not_judged_for_other_types_or_remote_hypervisors():
    for text in [
        "container: {domain_type: auto}",
        "container: {domain_type: qemu}",
        "container: {domain_type: kvm, libvirt_uri: 'qemu+ssh://far/system'}",
    ]:
        assert domain_type_problem(parse_config(text)) is None


def test_missing_files_are_named_by_their_key(tmp_path, original):
    config = read_config(original).config
    assert file_problems(config) == [
        "container.container_iso_file_path: /etc/anweddol/iso/anweddol_container.iso: no such file"
    ]
    private = tmp_path / "private.pem"
    private.mkdir()
    config = parse_config(f"server: {{private_rsa_key_file_path: '{private}'}}")
    assert file_problems(config) == [f"server.private_rsa_key_file_path: {private}: is a directory"]
    assert file_problems(parse_config("server: {enable_onetime_rsa_keys: true}")) == []
