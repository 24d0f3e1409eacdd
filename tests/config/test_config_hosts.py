"""The ``hypervisors:`` list, ``container.host_lost_grace`` and the database URLs: what a
file says, the engine ``Settings`` serve builds from it, and one line naming the key for
every bad value."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml
from configerrors import error_of

from anweddol_actors.cli.serve import changed_keys, settings_from_config
from anweddol_actors.config import DEFAULT_CONFIG_YAML, load_config, parse_config
from anweddol_actors.config.database import database_problem, is_database_url, redacted
from anweddol_actors.config.host import domain_type_problem, file_problems, iso_places
from anweddol_actors.config.model import HypervisorConfig
from anweddol_actors.engine.settings import LOCAL_HOST, HostSettings
from anweddol_actors.hypervisor.kvm import local_kvm_usable

TWO_HOSTS = """
hypervisors:
  - name: one
    libvirt_uri: qemu:///system
    address: 127.0.0.1
    max_containers: 1
  - name: two
    libvirt_uri: qemu+tcp://127.0.0.12:16511/session
    address: 127.0.0.12
    max_containers: null
    domain_type: qemu
    container_iso_file_path: /srv/two/anweddol_container.iso
"""


def host(**keys) -> str:
    """A one-entry list: a valid entry with ``keys`` changed (None: the key left out)."""
    entry = {
        "name": "one",
        "libvirt_uri": "qemu:///system",
        "address": "127.0.0.1",
        "max_containers": 1,
    }
    entry.update(keys)
    entry = {key: value for key, value in entry.items() if value is not ...}
    return yaml.safe_dump({"hypervisors": [entry]})


def test_a_list_maps_to_the_engine_hosts():
    config = parse_config(TWO_HOSTS)
    assert config.hypervisors == (
        HypervisorConfig("one", "qemu:///system", "127.0.0.1", 1, None, None),
        HypervisorConfig(
            "two",
            "qemu+tcp://127.0.0.12:16511/session",
            "127.0.0.12",
            None,
            "qemu",
            "/srv/two/anweddol_container.iso",
        ),
    )
    settings = settings_from_config(config)
    assert settings.hosts == (
        HostSettings("one", "qemu:///system", "127.0.0.1", 1, None, None),
        HostSettings(
            "two",
            "qemu+tcp://127.0.0.12:16511/session",
            "127.0.0.12",
            None,
            "qemu",
            "/srv/two/anweddol_container.iso",
        ),
    )
    assert settings.host_list() == settings.hosts
    # The server's total stays container.max_allowed_running_container_domains.
    assert settings.max_containers == 6


@pytest.mark.parametrize("text", ["", "hypervisors:\n", "hypervisors: []\n", "hypervisors: null"])
def test_no_list_is_the_one_host_of_before(text):
    config = parse_config("container: {libvirt_uri: 'test:///default'}\n" + text)
    assert config.hypervisors == ()
    settings = settings_from_config(config)
    assert settings == settings_from_config(
        parse_config("container: {libvirt_uri: 'test:///default'}")
    )
    assert settings.hosts == ()
    assert settings.host_list() == (
        HostSettings(LOCAL_HOST, "test:///default", "127.0.0.1", 6, None, None),
    )


def test_zero_capacity_and_every_domain_type_are_accepted():
    for kind in ("auto", "kvm", "qemu", None):
        (entry,) = parse_config(host(max_containers=0, domain_type=kind)).hypervisors
        assert (entry.max_containers, entry.domain_type) == (0, kind)
    names = ["a", "A.b_c-9", "x" * 64]
    assert [parse_config(host(name=name)).hypervisors[0].name for name in names] == names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            TWO_HOSTS.replace("address: 127.0.0.12", "address: 10.0.0.x"),
            "hypervisors[1].address: '10.0.0.x' is not an IP address",
        ),
        (
            host(address="::1"),
            "hypervisors[0].address: '::1' is an IPv6 address: QEMU's user-mode forward "
            "binds IPv4 only",
        ),
        (
            host(address="0.0.0.0"),
            "hypervisors[0].address: '0.0.0.0' is not one address: give the host's address "
            "the front end reaches",
        ),
        (host(address=...), "hypervisors[0].address: is required"),
        (host(address=None), "hypervisors[0].address: must not be null"),
        (host(address=12), "hypervisors[0].address: must be of string type"),
        (host(name=...), "hypervisors[0].name: is required"),
        (host(name=""), "hypervisors[0].name: must not be empty"),
        (
            host(name="web 1"),
            "hypervisors[0].name: must be 1 to 64 letters, digits, '_', '.' or '-' (got 'web 1')",
        ),
        (
            host(name="x" * 65),
            f"hypervisors[0].name: must be 1 to 64 letters, digits, '_', '.' or '-' "
            f"(got '{'x' * 65}')",
        ),
        (host(libvirt_uri=...), "hypervisors[0].libvirt_uri: is required"),
        (host(libvirt_uri=""), "hypervisors[0].libvirt_uri: must not be empty"),
        (
            host(libvirt_uri="rack2"),
            "hypervisors[0].libvirt_uri: must be a libvirt URI such as qemu+ssh://host/system "
            "(got 'rack2')",
        ),
        (host(max_containers=...), "hypervisors[0].max_containers: is required"),
        (host(max_containers=-1), "hypervisors[0].max_containers: must be at least 0"),
        (host(max_containers=1.5), "hypervisors[0].max_containers: must be of integer type"),
        (host(max_containers=True), "hypervisors[0].max_containers: must be of integer type"),
        (
            host(domain_type="xen"),
            "hypervisors[0].domain_type: must be one of auto, kvm, qemu (got 'xen')",
        ),
        (host(container_iso_file_path=""), "hypervisors[0].container_iso_file_path: must not "),
        (host(adress="1.2.3.4"), "hypervisors[0].adress: unknown key (did you mean 'address'?)"),
        (
            host(zone="a"),
            "hypervisors[0].zone: unknown key (known: name, libvirt_uri, address, "
            "max_containers, domain_type, container_iso_file_path)",
        ),
        (
            TWO_HOSTS.replace("name: two", "name: one"),
            "hypervisors[1].name: 'one' is already the name of hypervisors[0]",
        ),
        (
            "container: {network_mode: nat}\n" + TWO_HOSTS,
            "hypervisors[1].libvirt_uri: qemu+tcp://127.0.0.12:16511/session is a remote "
            "host: its guests are reachable only with container.network_mode: user",
        ),
        ("hypervisors: {name: one}", "hypervisors: must be a list"),
        ("hypervisors: one", "hypervisors: must be a list"),
        ("hypervisors: [one]", "hypervisors[0]: must be a mapping of keys"),
        ("hypervisors: [null]", "hypervisors[0]: must not be null"),
        ("hypervisor: []", "hypervisor: unknown key (did you mean 'hypervisors'?)"),
    ],
)
def test_every_bad_entry_is_one_line_naming_the_key(text, expected):
    assert error_of(text).startswith(f"config.yaml: {expected}")


def test_the_first_problem_in_file_order_is_shown():
    text = TWO_HOSTS.replace("address: 127.0.0.12", "address: nowhere").replace(
        "max_containers: 1", "max_containers: -2"
    )
    assert error_of(text) == (
        "config.yaml: hypervisors[0].max_containers: must be at least 0 (and 1 more problem)"
    )


def test_the_shipped_example_loads_once_uncommented():
    # default.yaml holds the list commented out: without it the server is the one host.
    assert load_config(None).hypervisors == ()
    assert "\nhypervisors:" not in DEFAULT_CONFIG_YAML
    example = DEFAULT_CONFIG_YAML[DEFAULT_CONFIG_YAML.index("# hypervisors:") :]
    text = re.sub(r"^# ?", "", example, flags=re.MULTILINE)
    config = parse_config(text, "example")
    assert [entry.name for entry in config.hypervisors] == ["here", "rack2"]
    assert config.hypervisors[1].container_iso_file_path is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", 60.0), ("host_lost_grace: 3", 3.0), ("host_lost_grace: null", None)],
)
def test_host_lost_grace(value, expected):
    config = parse_config(f"container: {{{value}}}")
    assert config.container.host_lost_grace == expected
    assert settings_from_config(config).host_lost_grace == expected


@pytest.mark.parametrize("value", ["0", "0.5", "-60", ".inf", ".nan", "soon", "true"])
def test_host_lost_grace_refused(value):
    message = error_of(f"container: {{host_lost_grace: {value}}}")
    assert message.startswith("config.yaml: container.host_lost_grace: must be ")


POSTGRESQL = "postgresql://anweddol@db.example.net:5432/anweddol"


def test_database_urls_pass_through_unchanged():
    config = parse_config(
        f"server: {{database: '{POSTGRESQL}'}}\n"
        f"access_token: {{access_token_database_file_path: 'postgres://tokens@db/tokens'}}\n"
    )
    assert config.server.database == POSTGRESQL
    assert config.access_token.access_token_database_file_path == "postgres://tokens@db/tokens"
    assert settings_from_config(config).database == POSTGRESQL
    # A path is as before: used as written, relative or not.
    for path in ("journal.sqlite3", "/var/lib/x/journal.sqlite3", "sqlite:////tmp/j.sqlite3"):
        assert parse_config(f"server: {{database: '{path}'}}").server.database == path


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "server.database",
            "mysql://u@h/db",
            "unsupported database URL scheme 'mysql': must be a SQLite file path, "
            "sqlite:///PATH, or postgresql://user@host:port/dbname",
        ),
        (
            "server.database",
            "postgresql://u@h:5432",
            "a postgresql:// URL names its database: postgresql://user@host:port/dbname",
        ),
        (
            "server.database",
            "postgresql://u:secret@h:99999/db",
            "the port of the postgresql:// URL is not a port number",
        ),
        ("server.database", "sqlite://j.sqlite3", "a SQLite URL is sqlite:///PATH"),
        ("server.database", "", "must not be empty"),
        (
            "access_token.access_token_database_file_path",
            "sqlite:///tokens.sqlite3",
            "must be a SQLite file path or postgresql://user@host:port/dbname",
        ),
        (
            "access_token.access_token_database_file_path",
            "redis://h/0",
            "unsupported database URL scheme 'redis'",
        ),
    ],
)
def test_bad_database_urls(key, value, expected):
    section, name = key.split(".")
    message = error_of(f"{section}: {{{name}: '{value}'}}")
    assert message.startswith(f"config.yaml: {key}: {expected}")
    assert "secret" not in message  # a URL's password is never repeated


def test_database_helpers():
    assert is_database_url(POSTGRESQL) and is_database_url("POSTGRES://h/db")
    assert not is_database_url("/var/lib/j.sqlite3")
    assert not is_database_url("sqlite:///j.sqlite3")
    assert database_problem(POSTGRESQL) is None
    assert database_problem("postgresql:///anweddol") is None  # libpq's local socket
    assert redacted("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redacted(POSTGRESQL) == POSTGRESQL
    assert redacted("/var/lib/j.sqlite3") == "/var/lib/j.sqlite3"


def test_only_local_hosts_isos_are_checked(tmp_path):
    present = tmp_path / "present.iso"
    present.write_bytes(b"iso")
    text = f"""
container: {{container_iso_file_path: '{present}'}}
hypervisors:
  - {{name: here, libvirt_uri: 'qemu:///system', address: 127.0.0.1, max_containers: 1}}
  - {{name: also, libvirt_uri: 'test:///default', address: 127.0.0.1, max_containers: 1,
      container_iso_file_path: '{tmp_path}/missing.iso'}}
  - {{name: far, libvirt_uri: 'qemu+ssh://far/system', address: 10.0.0.2, max_containers: 1,
      container_iso_file_path: /only/on/far.iso}}
  - {{name: far2, libvirt_uri: 'qemu+tcp://127.0.0.12:16511/session', address: 127.0.0.12,
      max_containers: 1}}
"""
    config = parse_config(text)
    assert file_problems(config) == [
        f"hypervisors[1].container_iso_file_path: {tmp_path}/missing.iso: no such file"
    ]
    places = iso_places(
        str(present),
        config.container.libvirt_uri,
        [(h.name, h.libvirt_uri, h.container_iso_file_path) for h in config.hypervisors],
    )
    assert [(p.host, p.key, p.path, p.checked) for p in places] == [
        ("here", "container.container_iso_file_path", str(present), True),
        ("also", "hypervisors[1].container_iso_file_path", f"{tmp_path}/missing.iso", True),
        ("far", "hypervisors[2].container_iso_file_path", "/only/on/far.iso", False),
        ("far2", "container.container_iso_file_path", str(present), False),
    ]
    # Without the list: the one host's ISO, as before, whatever its URI.
    for uri in ("qemu:///system", "qemu+ssh://far/system"):
        config = parse_config(
            f"container: {{container_iso_file_path: '{tmp_path}/none.iso', libvirt_uri: '{uri}'}}"
        )
        assert file_problems(config) == [
            f"container.container_iso_file_path: {tmp_path}/none.iso: no such file"
        ]


@pytest.mark.skipif(local_kvm_usable()[0], reason="KVM works on this host")
def test_kvm_on_a_local_host_where_it_is_unusable_is_named():
    problem = domain_type_problem(parse_config(host(domain_type="kvm")))
    assert problem.startswith("hypervisors[0].domain_type: kvm is not usable on this host (")
    # The section's kvm, inherited by a local host without its own.
    problem = domain_type_problem(parse_config("container: {domain_type: kvm}\n" + host()))
    assert problem.startswith("container.domain_type: kvm is not usable on this host (")


def test_kvm_is_not_judged_for_remote_hosts_or_overridden_types():
    remote = host(libvirt_uri="qemu+ssh://far/system", domain_type="kvm")
    assert domain_type_problem(parse_config(remote)) is None
    overridden = "container: {domain_type: kvm}\n" + host(domain_type="qemu")
    assert domain_type_problem(parse_config(overridden)) is None


def test_a_reload_names_the_list_when_it_changed():
    before = parse_config(TWO_HOSTS)
    after = parse_config(TWO_HOSTS.replace("max_containers: 1", "max_containers: 2"))
    assert changed_keys(before, after) == ["hypervisors"]
    assert changed_keys(before, parse_config(TWO_HOSTS)) == []
    assert changed_keys(parse_config(""), before) == ["hypervisors"]


def test_to_dict_round_trips_with_hosts():
    config = parse_config(TWO_HOSTS)
    plain = config.to_dict()
    assert plain["hypervisors"][1] == dataclasses.asdict(config.hypervisors[1])
    assert parse_config(yaml.safe_dump(plain)) == config
