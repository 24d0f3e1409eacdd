"""Loading configurations: defaults, the original's file, default.yaml, round trips."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from anweddol_actors.config import (
    DEFAULT_CONFIG_YAML,
    ConfigError,
    ServerConfig,
    config_from_mapping,
    dump_default,
    load_config,
    parse_config,
)
from anweddol_actors.config.model import SECTION_TYPES, HypervisorConfig
from anweddol_actors.config.schema import DEFAULTS, HOST_KEYS, HOSTS_KEY, SECTIONS

# shared/ sits beside the checkout (the project layout, and CI's), or above a worktree.
REFERENCE_CONFIG = next(
    (
        folder / "shared/reference/config.yaml"
        for folder in Path(__file__).resolve().parents[2:]
        if (folder / "shared/reference/config.yaml").exists()
    ),
    Path("shared/reference/config.yaml"),
)
PACKAGE_DEFAULT = Path(__file__).resolve().parents[2] / "anweddol_actors/config/default.yaml"
DOCS = Path(__file__).resolve().parents[2] / "docs/configuration.md"


def test_embedded_default_needs_no_file():
    config = load_config(None)
    assert isinstance(config, ServerConfig)
    assert config.container.container_memory == 256
    assert config.container.container_vcpus == 1
    assert config.container.max_allowed_running_container_domains == 6
    assert config.container.client_password_length == 100
    assert config.container.network_mode == "user"
    assert config.container.domain_type == "auto"
    assert config.container.libvirt_uri == "qemu:///system"
    assert config.container.container_iso_file_path is None
    assert config.container.ready_timeout == 120.0
    assert config.container.max_lifetime is None
    assert config.container.max_idle_time == 3600.0
    assert isinstance(config.container.max_idle_time, float)
    assert config.server.listen_port == 6150
    assert config.server.timeout == 10.0
    assert isinstance(config.server.timeout, float)
    assert config.server.max_message_size == 1 << 20
    assert config.server.on_start_live_containers == "destroy"
    assert config.port_forwarding.port_range == (10000, 20000)
    assert config.port_forwarding.port_count == 10001
    assert config.ip_filter.allowed_ip_list == ("any",)
    assert config.access_token.enabled is False


def test_original_config_file_loads(tmp_path):
    # A copy made at run time: the reference text is not committed with the tests.
    if not REFERENCE_CONFIG.exists():
        pytest.skip("reference config.yaml not available")
    path = tmp_path / "config.yaml"
    path.write_text(REFERENCE_CONFIG.read_text())
    config = load_config(path)
    assert config.container.container_iso_file_path == "/etc/anweddol/iso/anweddol_container.iso"
    assert config.container.container_memory == 1024
    assert config.container.container_vcpus == 2
    assert config.container.domain_type == "kvm"
    assert config.server.public_rsa_key_file_path == "/etc/anweddol/rsa/public.pem"
    assert config.server.log_file_path == "/var/log/anweddol/server.txt"
    assert config.server.user == "anweddol"
    assert config.web_server.listen_port == 8080
    assert config.log_rotation.enabled is True
    assert config.access_token.access_token_database_file_path == (
        "/etc/anweddol/credentials/access_token.db"
    )
    # Keys the original does not have take our defaults.
    assert config.container.network_mode == "user"
    assert config.container.max_lifetime is None
    assert config.container.max_idle_time == 3600.0
    assert config.server.database == "/var/lib/anweddol_actors/journal.sqlite3"


def test_shipped_default_yaml_is_the_embedded_default():
    assert PACKAGE_DEFAULT.read_text() == DEFAULT_CONFIG_YAML == dump_default()
    assert load_config(PACKAGE_DEFAULT) == load_config(None)


# Accepted so that the original's files load, not acted on: the default file shows them
# commented out, so that a file made from it (`config init`) gets no warning for them.
COMMENTED_KEYS = {
    "container": ["wait_max_tryout"],
    "web_server": ["log_file_path", "pid_file_path", "user"],
}


def test_shipped_default_yaml_spells_out_every_key():
    # "Identical in effect" would also hold for an empty file; an annotated default must
    # show every key with its value.
    uncommented = re.sub(r"^(\s*)# (\w+: )", r"\1\2", DEFAULT_CONFIG_YAML, flags=re.MULTILINE)
    document = yaml.safe_load(uncommented)
    live = yaml.safe_load(DEFAULT_CONFIG_YAML)
    assert list(document) == list(SECTIONS)
    for section, keys in SECTIONS.items():
        assert list(document[section]) == list(keys), section
        commented = COMMENTED_KEYS.get(section, [])
        assert [key for key in (live[section] or {})] == [
            key for key in keys if key not in commented
        ], section
        for key in keys:
            assert document[section][key] == DEFAULTS[section][key], f"{section}.{key}"


def test_dataclass_fields_are_the_schema_keys():
    assert [*SECTION_TYPES, HOSTS_KEY] == [f.name for f in dataclasses.fields(ServerConfig)]
    for section, cls in SECTION_TYPES.items():
        assert [f.name for f in dataclasses.fields(cls)] == list(SECTIONS[section])
    assert [f.name for f in dataclasses.fields(HypervisorConfig)] == list(HOST_KEYS)


def test_to_dict_round_trips_through_yaml():
    config = parse_config(
        "container: {max_allowed_running_container_domains: null}\n"
        "ip_filter: {enabled: true, denied_ip_list: [any], allowed_ip_list: [10.0.0.0/8]}\n"
    )
    plain = config.to_dict()
    assert plain["ip_filter"]["allowed_ip_list"] == ["10.0.0.0/8"]
    assert plain["port_forwarding"]["port_range"] == [10000, 20000]
    assert parse_config(yaml.safe_dump(plain)) == config


def test_partial_file_overlays_defaults(tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("container:\n  container_memory: 512\nserver:\n  timeout: 2.5\n")
    config = load_config(str(path))
    assert config.container.container_memory == 512
    assert config.container.container_vcpus == 1
    assert config.server.timeout == 2.5
    assert config.server.listen_port == 6150


def test_empty_file_and_commented_sections_mean_defaults(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    assert load_config(empty) == load_config(None)
    commented = tmp_path / "commented.yaml"
    commented.write_text("container:\n  # container_memory: 2048\nserver:\n")
    assert load_config(commented) == load_config(None)


def test_null_limit_means_unlimited():
    config = parse_config("container: {max_allowed_running_container_domains: null}")
    assert config.container.max_allowed_running_container_domains is None


@pytest.mark.parametrize(
    ("text", "lifetime", "idle"),
    [
        ("container: {max_lifetime: 7200, max_idle_time: 600}", 7200.0, 600.0),
        ("container: {max_lifetime: 0.5, max_idle_time: 1.5}", 0.5, 1.5),
        ("container: {max_lifetime: 86400, max_idle_time: null}", 86400.0, None),
        ("container: {max_lifetime: null, max_idle_time: null}", None, None),
        ("container: {max_lifetime: 60}", 60.0, 3600.0),
    ],
)
def test_container_time_limits(text, lifetime, idle):
    container = parse_config(text).container
    assert container.max_lifetime == lifetime
    assert container.max_idle_time == idle
    for value in (container.max_lifetime, container.max_idle_time):
        assert value is None or type(value) is float


def test_container_time_limits_round_trip():
    config = parse_config("container: {max_lifetime: 7200, max_idle_time: null}")
    plain = config.to_dict()
    assert plain["container"]["max_lifetime"] == 7200.0
    assert plain["container"]["max_idle_time"] is None
    assert parse_config(yaml.safe_dump(plain)) == config


def test_config_is_frozen():
    config = load_config(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.container.container_memory = 1  # type: ignore[misc]


def test_mapping_input_is_not_modified():
    data = {"container": {"container_memory": 300}}
    config_from_mapping(data)
    assert data == {"container": {"container_memory": 300}}


def test_docs_mention_every_key():
    text = DOCS.read_text()
    for section, keys in SECTIONS.items():
        assert re.search(rf"^#+ `?{section}`?", text, re.MULTILINE), section
        for key in keys:
            assert f"`{key}`" in text, f"{section}.{key} is not documented"


def test_errors_are_config_errors_not_crashes():
    with pytest.raises(ConfigError):
        parse_config("server: {listen_port: 0}")
