"""What a configuration file may say: Cerberus schema, defaults, and the cross-key checks.

This is the one place that holds the defaults (the ``default`` of each key, gathered in
``DEFAULTS``): the embedded default configuration is an empty document completed with
them and validated like any file, and
``default.yaml`` must say the same (a test holds it to that).

Sections and keys are the original server's (``reference/config.yaml``) plus ours; every
key is optional, so a file may hold only what it changes. Unknown keys are errors: a
misspelt key silently ignored is a setting silently not applied.

Besides the sections, one top-level list (ours): ``hypervisors``, the libvirt hosts the
containers are placed on (``HOST_KEYS`` per entry). Absent, null or empty: one host, from
``container.libvirt_uri``, as before the list existed.

One key holds a mapping of its own: ``server.front_end`` (``FRONT_END_KEYS``), this
server's name among the front ends sharing one PostgreSQL journal. Absent or null: the one
front end of its journal, as before several could share one.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import cerberus
from cerberus.errors import BasicErrorHandler

from anweddol_actors.config.database import database_problem, is_database_url
from anweddol_actors.policy.ip_filter import parse_ip_entry

__all__ = [
    "DEFAULTS",
    "FRONT_END_DEFAULTS",
    "FRONT_END_KEY",
    "FRONT_END_KEYS",
    "HOSTS_KEY",
    "HOST_DEFAULTS",
    "HOST_KEYS",
    "MAX_CLIENT_PASSWORD_LENGTH",
    "SCHEMA",
    "SECTIONS",
    "TOP_LEVEL_KEYS",
    "cross_check",
    "front_end_problem",
    "is_local_uri",
    "make_validator",
]

# dropbear (the SSH server of the shipped image) refuses passwords longer than 100
# characters at login (IMAGE-NOTES.md); the original generated 120.
MAX_CLIENT_PASSWORD_LENGTH = 100

ErrorFn = Callable[[Any, str], None]


def _one_of(*choices: str) -> Callable[[Any, Any, ErrorFn], None]:
    def check(field: Any, value: Any, error: ErrorFn) -> None:
        if value not in choices:
            error(field, f"must be one of {', '.join(choices)} (got {value!r})")

    return check


def _positive_seconds(field: Any, value: Any, error: ErrorFn) -> None:
    if not (value > 0 and math.isfinite(value)):
        error(field, f"must be a positive number of seconds (got {value!r})")


def _positive_seconds_or_null(field: Any, value: Any, error: ErrorFn) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        error(field, f"must be a positive number of seconds, or null for no limit (got {value!r})")


def _at_least_one_second_or_null(field: Any, value: Any, error: ErrorFn) -> None:
    if value is not None and not (value >= 1 and math.isfinite(value)):
        error(field, f"must be a number of seconds, at least 1, or null for never (got {value!r})")


def _bind_address(field: Any, value: Any, error: ErrorFn) -> None:
    if value == "":
        return  # "" means every IPv4 interface, as in the seed's DEFAULT_SERVER_BIND_ADDRESS
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        error(field, f'must be an IPv4 address, or "" for all interfaces (got {value!r})')


def _ip_entry(field: Any, value: Any, error: ErrorFn) -> None:
    try:
        parse_ip_entry(value)
    except ValueError as exc:
        error(field, str(exc))


def _port_range(field: Any, value: Any, error: ErrorFn) -> None:
    shape = "must be [first, last]: two port numbers from 1 to 65535"
    if len(value) != 2 or not all(type(port) is int for port in value):
        error(field, f"{shape} (got {value!r})")
        return
    first, last = value
    if not (1 <= first <= 65535 and 1 <= last <= 65535):
        error(field, f"{shape} (got {value!r})")
    elif first > last:
        error(field, f"first port ({first}) is greater than last port ({last})")


def _max_domains(field: Any, value: Any, error: ErrorFn) -> None:
    if value is not None and value < 1:
        error(field, f"must be at least 1, or null for no limit (got {value})")


def _database(field: Any, value: Any, error: ErrorFn) -> None:
    problem = database_problem(value)
    if problem:
        error(field, problem)


def _token_database(field: Any, value: Any, error: ErrorFn) -> None:
    # The token store opens a plain path (the original's file) or a PostgreSQL URL.
    problem = database_problem(value, sqlite_url=False)
    if problem:
        error(field, problem)


# A host's name is shown in `hosts list`, journalled with each container and typed in
# `hosts drain NAME`: no spaces, nothing a shell or a log line would mangle.
_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _host_name(field: Any, value: Any, error: ErrorFn) -> None:
    if not _HOST_NAME.fullmatch(value):
        error(field, f"must be 1 to 64 letters, digits, '_', '.' or '-' (got {value!r})")


def _host_address(field: Any, value: Any, error: ErrorFn) -> None:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        error(field, f"{value!r} is not an IP address")
        return
    if address.version != 4:
        # domain_xml.user_netdev_arg: the guest's network is ipv6=off, and hostfwd binds
        # an IPv4 address.
        error(field, f"{value!r} is an IPv6 address: QEMU's user-mode forward binds IPv4 only")
    elif address.is_unspecified:
        # The forward would listen on every interface of the host, and the front end
        # needs one address to relay to.
        error(field, f"{value!r} is not one address: give the host's address the front end reaches")


# A front end's name is journalled as the owner of each of its containers, shown in
# `front-ends list` and `containers list`, and part of a PostgreSQL NOTIFY channel's name
# (at most 63 bytes): shorter than a host's, the same characters.
_FRONT_END_NAME = re.compile(r"[A-Za-z0-9_.-]{1,48}")

# The shortest lease: it is renewed every lease/3 seconds, and a renewal is a database
# round trip that may meet a slow commit; below a second between renewals a busy journal
# would let a live front end's lease run out.
MIN_LEASE = 3


def _front_end_name(field: Any, value: Any, error: ErrorFn) -> None:
    if not _FRONT_END_NAME.fullmatch(value):
        error(field, f"must be 1 to 48 letters, digits, '_', '.' or '-' (got {value!r})")


def _lease(field: Any, value: Any, error: ErrorFn) -> None:
    if not (value >= MIN_LEASE and math.isfinite(value)):
        error(field, f"must be a number of seconds, at least {MIN_LEASE} (got {value!r})")


def _libvirt_uri(field: Any, value: Any, error: ErrorFn) -> None:
    scheme, separator, _ = value.partition("://")
    if not separator or not re.fullmatch(r"[a-z][a-z0-9+]*", scheme):
        error(field, f"must be a libvirt URI such as qemu+ssh://host/system (got {value!r})")


def _password_length(field: Any, value: Any, error: ErrorFn) -> None:
    if value > MAX_CLIENT_PASSWORD_LENGTH:
        error(
            field,
            f"must be at most {MAX_CLIENT_PASSWORD_LENGTH} (got {value}): dropbear in the "
            "container refuses longer passwords at login",
        )


def _string(default: str | None, *, empty: bool = False, **rules: Any) -> dict[str, Any]:
    return {
        "type": "string",
        "default": default,
        "nullable": default is None,
        "empty": empty,
        **rules,
    }


def _integer(default: int | None, *, nullable: bool = False, **rules: Any) -> dict[str, Any]:
    return {"type": "integer", "default": default, "nullable": nullable, **rules}


def _boolean(default: bool) -> dict[str, Any]:
    return {"type": "boolean", "default": default}


def _port(default: int) -> dict[str, Any]:
    return _integer(default, min=1, max=65535)


def _seconds(default: float) -> dict[str, Any]:
    return {"type": "number", "default": default, "check_with": _positive_seconds}


def _limit_seconds(default: float | None) -> dict[str, Any]:
    return {
        "type": "number",
        "default": default,
        "nullable": True,
        "check_with": _positive_seconds_or_null,
    }


def _ip_list(default: list[str]) -> dict[str, Any]:
    return {
        "type": "list",
        "default": default,
        "schema": {"type": "string", "check_with": _ip_entry},
    }


_STATE_DIR = "/var/lib/anweddol_actors"

# Key order is the order of default.yaml and of the dataclasses in model.py.
SECTIONS: dict[str, dict[str, Any]] = {
    "container": {
        # None: the image built by `python -m anweddol_actors image build`.
        "container_iso_file_path": _string(None),
        "max_allowed_running_container_domains": _integer(
            6, nullable=True, check_with=_max_domains
        ),
        "container_memory": _integer(256, min=1),
        "container_vcpus": _integer(1, min=1),
        "libvirt_uri": _string("qemu:///system"),
        "domain_type": _string("auto", check_with=_one_of("auto", "kvm", "qemu")),
        "network_mode": _string("user", check_with=_one_of("user", "nat")),
        "nat_interface_name": _string("virbr0"),
        "wait_max_tryout": _integer(20, min=1),
        "ready_timeout": _seconds(120),
        "endpoint_username": _string("endpoint"),
        "endpoint_password": _string("endpoint"),
        "endpoint_listen_port": _port(22),
        "client_password_length": _integer(100, min=1, check_with=_password_length),
        # Ours: the original kept a container until its client destroyed it, so a
        # forgotten one held a port and memory until the server stopped.
        "max_lifetime": _limit_seconds(None),
        "max_idle_time": _limit_seconds(3600),
        # Ours: containers booted and administered ahead of demand, handed over by CREATE.
        "warm_pool_size": _integer(1, min=0),
        # Ours: seconds a host may stay unreachable before its containers are declared
        # lost (credentials revoked, capacity freed); null: never.
        "host_lost_grace": {
            "type": "number",
            "default": 60,
            "nullable": True,
            "check_with": _at_least_one_second_or_null,
        },
    },
    "server": {
        "public_rsa_key_file_path": _string(f"{_STATE_DIR}/rsa/public.pem"),
        "private_rsa_key_file_path": _string(f"{_STATE_DIR}/rsa/private.pem"),
        "log_file_path": _string(None),
        "pid_file_path": _string(None),
        "user": _string(None),
        "bind_address": _string("0.0.0.0", empty=True, check_with=_bind_address),
        "listen_port": _port(6150),
        # null: no per-wait limit, as in the original; request_deadline still bounds the
        # wait for the request, and each wait after it (transport/channel.py).
        "timeout": _limit_seconds(10),
        "enable_onetime_rsa_keys": _boolean(False),
        # A SQLite file, sqlite:///PATH, or postgresql://user@host:port/dbname.
        "database": _string(f"{_STATE_DIR}/journal.sqlite3", check_with=_database),
        # 4 KiB holds any built-in request or response; the ceiling bounds what one
        # connection may make the server buffer.
        "max_message_size": _integer(1 << 20, min=4096, max=64 << 20),
        "on_start_live_containers": _string("destroy", check_with=_one_of("destroy", "adopt")),
        # Ours: the original's timeout restarted at every byte, so a client trickling one
        # byte at a time held a session (and a thread) for ever.
        "request_deadline": _seconds(30),
        "max_connections": _integer(512, min=1),
        "max_connections_per_address": _integer(16, min=1),
        # Ours: the log's format, text lines or one JSON object a line.
        "log_format": _string("text", check_with=_one_of("text", "json")),
        # Ours: the Unix socket of the admin commands (`containers`, `status`); only root
        # and the server's user may open it.
        "admin_socket_path": _string("/run/anweddol_actors/admin.sock"),
        # Ours: this server's name and lease among the front ends of one PostgreSQL
        # journal (FRONT_END_KEYS); null: the journal's only front end.
        "front_end": {"type": "dict", "default": None, "nullable": True},
    },
    "port_forwarding": {
        "port_range": {"type": "list", "default": [10000, 20000], "check_with": _port_range},
        "bind_address": _string("", empty=True, check_with=_bind_address),
        # Ours: every relayed connection reaches the guest from one address, so a few idle
        # ones would fill its SSH server's unauthenticated slots and lock the owner out.
        "max_connections": _integer(16, min=1),
        "max_connections_per_address": _integer(4, min=1),
    },
    "ip_filter": {
        "enabled": _boolean(False),
        "denied_ip_list": _ip_list([]),
        "allowed_ip_list": _ip_list(["any"]),
    },
    "access_token": {
        "enabled": _boolean(False),
        # A SQLite file, or postgresql://user@host:port/dbname (as server.database).
        "access_token_database_file_path": _string(
            f"{_STATE_DIR}/access_tokens.sqlite3", check_with=_token_database
        ),
    },
    # Rotation of server.log_file_path, as in the original (anweddol_actors.logs).
    "log_rotation": {
        "enabled": _boolean(False),
        "log_archive_folder_path": _string(None),
        "max_log_lines_amount": _integer(4000, min=1),
        "action": _string("archive", check_with=_one_of("delete", "archive")),
    },
    # The HTTP front end (anweddol_actors.web), in serve's process beside the TCP server.
    "web_server": {
        # Ours: the original had no switch (its web server was a separate command).
        "enabled": _boolean(False),
        # Ours: null listens where the TCP server does (server.bind_address).
        "bind_address": _string(None, check_with=_bind_address),
        # null: 8080, or 4443 with enable_ssl (the original's two defaults).
        "listen_port": _integer(None, nullable=True, min=1, max=65535),
        "enable_ssl": _boolean(False),
        "ssl_pem_private_key_file_path": _string(None),
        "ssl_pem_certificate_file_path": _string(None),
        # Ours: GET /metrics (Prometheus text format) and the operator's page /ui/.
        "enable_metrics": _boolean(False),
        "enable_ui": _boolean(False),
        # Ours: who may load /ui/ (and its data); the API and /metrics follow ip_filter.
        "admin_allowed_ip_list": _ip_list(["127.0.0.1", "::1"]),
        # The original ran its web server as a daemon of its own: these three are kept so
        # that its files load; here the one process uses the server section's.
        "log_file_path": _string(None),
        "pid_file_path": _string(None),
        "user": _string(None),
    },
}

# The top-level list of hypervisor hosts; each entry's keys, in the order of model.py's
# HypervisorConfig. No default: an entry names its host, its address and its capacity.
HOSTS_KEY = "hypervisors"
HOST_KEYS: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "required": True, "empty": False, "check_with": _host_name},
    "libvirt_uri": {"type": "string", "required": True, "empty": False, "check_with": _libvirt_uri},
    # Where the front end reaches this host's forwarded guest ports (QEMU's forward
    # binds there); 127.0.0.1 for a host on the front end's machine.
    "address": {"type": "string", "required": True, "empty": False, "check_with": _host_address},
    # null: no limit of its own (the server's total still caps it).
    "max_containers": {"type": "integer", "required": True, "nullable": True, "min": 0},
    # null: the container section's (domain_type, container_iso_file_path).
    "domain_type": {
        "type": "string",
        "default": None,
        "nullable": True,
        "check_with": _one_of("auto", "kvm", "qemu"),
    },
    "container_iso_file_path": _string(None),
}
HOST_DEFAULTS: dict[str, Any] = {
    key: rules["default"] for key, rules in HOST_KEYS.items() if "default" in rules
}

# The keys of server.front_end, in the order of model.py's FrontEndConfig.
FRONT_END_KEY = "front_end"
FRONT_END_KEYS: dict[str, dict[str, Any]] = {
    "name": {
        "type": "string",
        "required": True,
        "empty": False,
        "check_with": _front_end_name,
    },
    # Seconds another front end waits, once this one stops renewing, before it destroys
    # this one's containers (their forwarders died with it); renewed every lease/3.
    "lease": {"type": "number", "default": 30, "check_with": _lease},
}
FRONT_END_DEFAULTS: dict[str, Any] = {
    key: rules["default"] for key, rules in FRONT_END_KEYS.items() if "default" in rules
}

# What the top level of a file may hold, in the order of default.yaml.
TOP_LEVEL_KEYS = (*SECTIONS, HOSTS_KEY)

# Defaults are filled in by the loader, not by Cerberus: Cerberus also puts the default in
# place of an explicit null, which would make `container_memory: null` mean 256 silently.
DEFAULTS: dict[str, dict[str, Any]] = {
    name: {key: rules["default"] for key, rules in keys.items()} for name, keys in SECTIONS.items()
}


def _unless_null(check: Callable[[Any, Any, ErrorFn], None]) -> Callable[[Any, Any, ErrorFn], None]:
    # Cerberus runs check_with even on a null its `nullable` rule already refused; the
    # checks compare numbers, so a null would reach them as a TypeError, not a message.
    def run(field: Any, value: Any, error: ErrorFn) -> None:
        if value is not None:
            check(field, value, error)

    return run


def _schema_rules(rules: Mapping[str, Any]) -> dict[str, Any]:
    schema = {rule: value for rule, value in rules.items() if rule != "default"}
    if "check_with" in schema:
        schema["check_with"] = _unless_null(schema["check_with"])
    return schema


def _section_schema(name: str, keys: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    schema = {key: _schema_rules(rules) for key, rules in keys.items()}
    if name == "server":
        schema[FRONT_END_KEY]["schema"] = {
            key: _schema_rules(rules) for key, rules in FRONT_END_KEYS.items()
        }
    return {"type": "dict", "schema": schema}


SCHEMA: dict[str, Any] = {
    **{name: _section_schema(name, keys) for name, keys in SECTIONS.items()},
    HOSTS_KEY: {
        "type": "list",
        "schema": {
            "type": "dict",
            "schema": {key: _schema_rules(rules) for key, rules in HOST_KEYS.items()},
        },
    },
}


class _Messages(BasicErrorHandler):
    # Phrased for an administrator reading one line, not for a Cerberus user.
    messages = {
        **BasicErrorHandler.messages,
        0x02: "is required",
        0x03: "unknown key",
        0x22: "must not be empty",
        0x23: "must not be null",
        0x42: "must be at least {constraint}",
        0x43: "must be at most {constraint}",
    }


class _Validator(cerberus.Validator):
    # Cerberus counts booleans as integers (bool subclasses int): `container_memory: yes`
    # would pass as 1.
    types_mapping = {
        **cerberus.Validator.types_mapping,
        "integer": cerberus.TypeDefinition("integer", (int,), (bool,)),
    }


def make_validator() -> cerberus.Validator:
    """A fresh validator (Cerberus validators keep per-document state: one per load)."""
    return _Validator(SCHEMA, error_handler=_Messages)


def cross_check(document: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Problems between keys of a document that passed the schema: ``(key path, message)``."""
    problems: list[tuple[str, str]] = []
    first, last = document["port_forwarding"]["port_range"]
    maximum = document["container"]["max_allowed_running_container_domains"]
    ports = last - first + 1
    if maximum is not None and ports < maximum:
        # Each running container holds one forwarded port for its whole life.
        problems.append(
            (
                "port_forwarding.port_range",
                f"has fewer ports ({ports}) than "
                f"container.max_allowed_running_container_domains ({maximum})",
            )
        )
    problems.extend(_host_problems(document))
    problem = front_end_problem(document["server"][FRONT_END_KEY], document["server"]["database"])
    if problem:
        problems.append((f"server.{FRONT_END_KEY}", problem))
    web = document["web_server"]
    if web["enable_ssl"]:
        for key in ("ssl_pem_private_key_file_path", "ssl_pem_certificate_file_path"):
            if not web[key]:
                problems.append((f"web_server.{key}", "must be set when enable_ssl is true"))
    return problems


def front_end_problem(
    front_end: Mapping[str, Any] | None, database: str, source: str = "server.database"
) -> str | None:
    """Why a front end's name cannot go with the journal ``database``, or None.

    Front ends share one journal only on a PostgreSQL server: a SQLite file is one
    machine's, and its single writer's lock would serialise every front end's commits.
    ``source``: where ``database`` was given (the key, or ``serve --database``). The message
    does not repeat ``database``: a URL may hold a password.
    """
    if front_end is None or is_database_url(database):
        return None
    return (
        f"front ends share a PostgreSQL journal: {source} must be a "
        "postgresql://user@host:port/dbname URL, not a SQLite file"
    )


def _host_problems(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    first_of: dict[str, int] = {}
    for index, host in enumerate(document.get(HOSTS_KEY) or ()):
        name = host["name"]
        if name in first_of:
            # The name is the host's key: in the journal, in `hosts drain NAME`.
            problems.append(
                (
                    f"{HOSTS_KEY}[{index}].name",
                    f"{name!r} is already the name of {HOSTS_KEY}[{first_of[name]}]",
                )
            )
        first_of.setdefault(name, index)
        if document["container"]["network_mode"] == "nat" and not is_local_uri(host["libvirt_uri"]):
            # In nat mode the front end relays to the guest's address on its host's
            # libvirt bridge, which only that host reaches.
            problems.append(
                (
                    f"{HOSTS_KEY}[{index}].libvirt_uri",
                    f"{host['libvirt_uri']} is a remote host: its guests are reachable only "
                    "with container.network_mode: user",
                )
            )
    return problems


def is_local_uri(uri: str) -> bool:
    """A libvirt URI of this machine: no host part (``qemu:///system``, ``test:///default``);
    ``qemu+ssh://host/system`` or ``qemu+tcp://127.0.0.12:16511/session`` are remote."""
    return not urlsplit(uri).netloc
