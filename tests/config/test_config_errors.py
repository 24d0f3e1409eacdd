"""Every kind of bad configuration gives one ConfigError line naming the file and the key."""

from __future__ import annotations

import os

import pytest
from configerrors import error_of

from anweddol_actors.config import ConfigError, load_config, parse_config


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "container: {container_memory: lots}",
            "config.yaml: container.container_memory: must be of integer type",
        ),
        # YAML booleans are Python ints; Cerberus would take `yes` for 1.
        (
            "container: {container_vcpus: yes}",
            "config.yaml: container.container_vcpus: must be of integer type",
        ),
        (
            "container: {container_memory: null}",
            "config.yaml: container.container_memory: must not be null",
        ),
        (
            "container: {container_memory: 0}",
            "config.yaml: container.container_memory: must be at least 1",
        ),
        (
            "container: {max_allowed_running_container_domains: 0}",
            "config.yaml: container.max_allowed_running_container_domains: "
            "must be at least 1, or null for no limit (got 0)",
        ),
        (
            "container: {client_password_length: 120}",
            "config.yaml: container.client_password_length: must be at most 100 (got 120): "
            "dropbear in the container refuses longer passwords at login",
        ),
        (
            "container: {network_mode: bridge}",
            "config.yaml: container.network_mode: must be one of user, nat (got 'bridge')",
        ),
        (
            "container: {domain_type: xen}",
            "config.yaml: container.domain_type: must be one of auto, kvm, qemu (got 'xen')",
        ),
        (
            "container: {ready_timeout: 0}",
            "config.yaml: container.ready_timeout: must be a positive number of seconds (got 0)",
        ),
        (
            "container: {max_lifetime: 0}",
            "config.yaml: container.max_lifetime: "
            "must be a positive number of seconds, or null for no limit (got 0)",
        ),
        (
            "container: {max_lifetime: -3600}",
            "config.yaml: container.max_lifetime: "
            "must be a positive number of seconds, or null for no limit (got -3600)",
        ),
        (
            "container: {max_lifetime: .inf}",
            "config.yaml: container.max_lifetime: "
            "must be a positive number of seconds, or null for no limit (got inf)",
        ),
        (
            "container: {max_idle_time: 0.0}",
            "config.yaml: container.max_idle_time: "
            "must be a positive number of seconds, or null for no limit (got 0.0)",
        ),
        (
            "container: {max_idle_time: .nan}",
            "config.yaml: container.max_idle_time: "
            "must be a positive number of seconds, or null for no limit (got nan)",
        ),
        (
            "container: {max_idle_time: 1h}",
            "config.yaml: container.max_idle_time: must be of number type",
        ),
        (
            "container: {max_idle_time: '3600'}",
            "config.yaml: container.max_idle_time: must be of number type",
        ),
        # A boolean is not a number here, although YAML's `yes` is Python's True (== 1).
        (
            "container: {max_lifetime: yes}",
            "config.yaml: container.max_lifetime: must be of number type",
        ),
        (
            "container: {max_idle_time: [60]}",
            "config.yaml: container.max_idle_time: must be of number type",
        ),
        (
            "container: {endpoint_password: ''}",
            "config.yaml: container.endpoint_password: must not be empty",
        ),
        (
            "server: {listen_port: 70000}",
            "config.yaml: server.listen_port: must be at most 65535",
        ),
        (
            "server: {timeout: soon}",
            "config.yaml: server.timeout: must be of number type",
        ),
        (
            "server: {bind_address: localhost}",
            "config.yaml: server.bind_address: must be an IPv4 address, "
            "or \"\" for all interfaces (got 'localhost')",
        ),
        (
            "server: {on_start_live_containers: keep}",
            "config.yaml: server.on_start_live_containers: "
            "must be one of destroy, adopt (got 'keep')",
        ),
        (
            "server: {max_message_size: 100}",
            "config.yaml: server.max_message_size: must be at least 4096",
        ),
        (
            "port_forwarding: {port_range: [10000, 10002]}",
            "config.yaml: port_forwarding.port_range: has fewer ports (3) than "
            "container.max_allowed_running_container_domains (6)",
        ),
        (
            "port_forwarding: {port_range: [20000, 10000]}",
            "config.yaml: port_forwarding.port_range: "
            "first port (20000) is greater than last port (10000)",
        ),
        (
            "port_forwarding: {port_range: [10000]}",
            "config.yaml: port_forwarding.port_range: "
            "must be [first, last]: two port numbers from 1 to 65535 (got [10000])",
        ),
        (
            "ip_filter: {denied_ip_list: [10.0.0.1/8]}",
            "config.yaml: ip_filter.denied_ip_list[0]: "
            "'10.0.0.1/8' has host bits set (did you mean 10.0.0.0/8?)",
        ),
        (
            "ip_filter: {allowed_ip_list: [any, example.org]}",
            "config.yaml: ip_filter.allowed_ip_list[1]: "
            "'example.org' is neither 'any', an IP address nor a CIDR network",
        ),
        (
            "ip_filter: {allowed_ip_list: any}",
            "config.yaml: ip_filter.allowed_ip_list: must be a list",
        ),
        (
            "ip_filter: {enabled: maybe}",
            "config.yaml: ip_filter.enabled: must be of boolean type",
        ),
        (
            "log_rotation: {action: shred}",
            "config.yaml: log_rotation.action: must be one of delete, archive (got 'shred')",
        ),
        ("container: 5", "config.yaml: container: must be a mapping of keys"),
        (
            "container: {container_memroy: 512}",
            "config.yaml: container.container_memroy: "
            "unknown key (did you mean 'container_memory'?)",
        ),
        ("contianer: {}", "config.yaml: contianer: unknown key (did you mean 'container'?)"),
        # The original's older key names are unknown here, with a pointer to today's.
        (
            "access_token: {access_tokens_database_path: /x}",
            "config.yaml: access_token.access_tokens_database_path: "
            "unknown key (did you mean 'access_token_database_file_path'?)",
        ),
    ],
)
def test_bad_value_names_the_key(text, expected):
    assert error_of(text) == expected


def test_several_problems_report_the_first_in_file_order():
    message = error_of("server: {listen_port: 0}\ncontainer: {container_memory: x, bogus: 1}")
    assert message == "config.yaml: server.listen_port: must be at least 1 (and 2 more problems)"


def test_unlimited_containers_need_no_port_count_check():
    config = parse_config(
        "container: {max_allowed_running_container_domains: null}\n"
        "port_forwarding: {port_range: [10000, 10000]}"
    )
    assert config.port_forwarding.port_count == 1


def test_top_level_must_be_a_mapping():
    assert error_of("- container\n- server\n").startswith(
        "config.yaml: the top level must be a mapping of sections (container, server, "
    )
    assert error_of("just words").endswith("not a string")


def test_invalid_yaml_gives_line_and_column():
    message = error_of("container:\n  container_memory: 512\n  vcpus: [1, 2\n")
    assert message.startswith("config.yaml: line ")
    assert "invalid YAML" in message
    line = int(message.split("line ")[1].split(",")[0])
    assert line >= 3


def test_duplicate_keys_are_refused_with_their_line():
    message = error_of("container:\n  container_memory: 512\n  container_memory: 1024\n")
    assert message == (
        "config.yaml: line 3, column 3: invalid YAML: duplicate key 'container_memory'"
    )


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file$"):
        load_config(path)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.yaml"
    path.write_text("server: {}\n")
    path.chmod(0)
    with pytest.raises(ConfigError, match=r"secret\.yaml: permission denied$"):
        load_config(path)


def test_other_read_errors(tmp_path):
    # Root bypasses permissions, so also check an OS error root cannot bypass.
    (tmp_path / "plain").write_text("")
    path = tmp_path / "plain" / "config.yaml"
    with pytest.raises(ConfigError, match=r"config\.yaml: cannot read: Not a directory$"):
        load_config(path)


def test_binary_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"server:\n  user: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(bad byte at offset 16\)$"):
        load_config(path)
