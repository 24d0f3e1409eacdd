"""Read a configuration file into a ``ServerConfig``, or say in one line what is wrong.

Every failure is a ``ConfigError`` whose text is ``"<file>: <key path>: <problem>"`` (or
``"<file>: line N, column M: invalid YAML: ..."``), so ``serve`` can print it as is.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from anweddol_actors.config import compat
from anweddol_actors.config.model import (
    SECTION_TYPES,
    FrontEndConfig,
    HypervisorConfig,
    ServerConfig,
)
from anweddol_actors.config.schema import (
    DEFAULTS,
    FRONT_END_DEFAULTS,
    FRONT_END_KEY,
    FRONT_END_KEYS,
    HOST_DEFAULTS,
    HOST_KEYS,
    HOSTS_KEY,
    SECTIONS,
    TOP_LEVEL_KEYS,
    cross_check,
    make_validator,
)
from anweddol_actors.errors import AnweddolError

__all__ = [
    "DEFAULT_CONFIG_YAML",
    "EMBEDDED_DEFAULT_NAME",
    "ConfigError",
    "ConfigFile",
    "config_from_mapping",
    "dump_default",
    "load_config",
    "parse_config",
    "read_config",
]

EMBEDDED_DEFAULT_NAME = "<embedded default>"

# Numbers of seconds may be written as integers; the program always sees floats (or None
# where null means "no limit").
_FLOAT_KEYS = {
    ("container", "ready_timeout"),
    ("container", "max_lifetime"),
    ("container", "max_idle_time"),
    ("server", "timeout"),
    ("server", "request_deadline"),
    ("container", "host_lost_grace"),
}


class ConfigError(AnweddolError):
    """The configuration cannot be used; ``str()`` is one line naming the file and key."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML would keep the last one silently."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            continue  # unhashable: construct_mapping below raises PyYAML's own error
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_default_yaml() -> str:
    return resources.files("anweddol_actors.config").joinpath("default.yaml").read_text("utf-8")


#: The annotated default configuration file shipped with the package (``default.yaml``).
DEFAULT_CONFIG_YAML: str = _read_default_yaml()


def dump_default() -> str:
    """Text of the annotated default configuration file, to start a new one from."""
    return DEFAULT_CONFIG_YAML


@dataclass(frozen=True)
class ConfigFile:
    """A loaded configuration, with what its file said besides the values."""

    config: ServerConfig
    name: str  # the path as given, or EMBEDDED_DEFAULT_NAME
    # ``section.key`` of each key the file sets, in its order (none for the default).
    given: tuple[str, ...]
    # One line each: keys whose meaning changed from the original's (``compat``).
    warnings: tuple[str, ...]


def read_config(path: str | Path | None) -> ConfigFile:
    """Like ``load_config``, keeping which keys the file set and their warnings."""
    if path is None:
        return ConfigFile(load_config(None), EMBEDDED_DEFAULT_NAME, (), ())
    name = str(path)
    data = _parse_document(_read_text(path), name)
    config = config_from_mapping(data, name)
    return ConfigFile(config, name, compat.given_keys(data), tuple(compat.warnings(data, config)))


def load_config(path: str | Path | None) -> ServerConfig:
    """Load and validate a configuration file; ``None`` means the embedded default."""
    if path is None:
        return config_from_mapping({}, EMBEDDED_DEFAULT_NAME)
    return parse_config(_read_text(path), str(path))


def parse_config(text: str, name: str = "<string>") -> ServerConfig:
    """Validate configuration text; ``name`` prefixes error messages."""
    return config_from_mapping(_parse_document(text, name), name)


def _read_text(path: str | Path) -> str:
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{name}: is a directory, not a configuration file") from None
    except PermissionError:
        raise ConfigError(f"{name}: permission denied") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (bad byte at offset {exc.start})") from None


def _parse_document(text: str, name: str) -> Any:
    """The YAML document as written (no defaults), or a ConfigError naming the place."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{name}: {where}invalid YAML: {_one_line(problem)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: invalid YAML: {_one_line(str(exc))}") from None


def config_from_mapping(data: Mapping[str, Any] | None, name: str = "<mapping>") -> ServerConfig:
    """Validate an already parsed document (``None``: an empty file, all defaults)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{name}: the top level must be a mapping of sections "
            f"({', '.join(TOP_LEVEL_KEYS)}), not {_kind(data)}"
        )
    # A section whose keys are all commented out reads as null: it means "all defaults";
    # so does a hypervisors list whose entries are all commented out.
    document = {
        key: (([] if key == HOSTS_KEY else {}) if value is None else value)
        for key, value in data.items()
    }
    for section, defaults in DEFAULTS.items():
        values = document.setdefault(section, {})
        if isinstance(values, Mapping):
            # A copy: the file's own mappings are the caller's, and defaults are shared.
            document[section] = {**copy.deepcopy(defaults), **values}
    server = document["server"]
    if isinstance(server, Mapping) and isinstance(server.get(FRONT_END_KEY), Mapping):
        server[FRONT_END_KEY] = {**FRONT_END_DEFAULTS, **server[FRONT_END_KEY]}
    hosts = document.setdefault(HOSTS_KEY, [])
    if isinstance(hosts, list):
        document[HOSTS_KEY] = [
            {**HOST_DEFAULTS, **host} if isinstance(host, Mapping) else host for host in hosts
        ]

    validator = make_validator()
    if not validator.validate(document):
        problems = _flatten(validator.errors, ())
        problems.sort(key=lambda problem: _rank(data, problem[0]))
        _raise(
            name,
            [(_format_path(data, path), _explain(path, message)) for path, message in problems],
        )
    normalized = validator.document
    _raise(name, cross_check(normalized))
    return _build(normalized)


def _raise(name: str, problems: list[tuple[str, str]]) -> None:
    if not problems:
        return
    path, message = problems[0]
    more = len(problems) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    raise ConfigError(f"{name}: {path}: {message}{suffix}")


def _build(document: Mapping[str, Mapping[str, Any]]) -> ServerConfig:
    sections = {}
    for section, cls in SECTION_TYPES.items():
        values = {}
        for key, value in document[section].items():
            if isinstance(value, list):
                value = tuple(value)
            elif (section, key) in _FLOAT_KEYS and value is not None:
                value = float(value)
            elif (section, key) == ("server", FRONT_END_KEY) and value is not None:
                value = FrontEndConfig(name=value["name"], lease=float(value["lease"]))
            values[key] = value
        sections[section] = cls(**values)
    hosts = tuple(HypervisorConfig(**host) for host in document[HOSTS_KEY])
    return ServerConfig(**sections, hypervisors=hosts)


def _flatten(errors: Mapping[Any, list[Any]], prefix: tuple) -> list[tuple[tuple, str]]:
    # Cerberus nests errors as {field: [message | {subfield: [...]}, ...]}.
    flat: list[tuple[tuple, str]] = []
    for key, entries in errors.items():
        for entry in entries:
            if isinstance(entry, Mapping):
                flat.extend(_flatten(entry, (*prefix, key)))
            else:
                flat.append(((*prefix, key), str(entry)))
    return flat


def _rank(document: Any, path: tuple) -> tuple[int, ...]:
    """Position of a key path in the file, so the first problem reported is the first met."""
    rank = []
    node = document
    for key in path:
        if isinstance(node, Mapping):
            keys = list(node)
            rank.append(keys.index(key) if key in keys else len(keys))
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int):
            rank.append(key)
            node = node[key] if key < len(node) else None
        else:
            rank.append(0)
            node = None
    return tuple(rank)


def _format_path(document: Any, path: tuple) -> str:
    """``section.key[index]``: brackets only for list positions, whatever the key's type."""
    text = ""
    node = document
    for key in path:
        if isinstance(node, list):
            text += f"[{key}]"
            node = node[key] if isinstance(key, int) and key < len(node) else None
        else:
            text += f".{key}" if text else str(key)
            node = node.get(key) if isinstance(node, Mapping) else None
    return text


def _explain(path: tuple, message: str) -> str:
    if message == "unknown key":
        if len(path) == 1:
            known = list(TOP_LEVEL_KEYS)
        elif path[0] == HOSTS_KEY:
            known = list(HOST_KEYS)
        elif path[:2] == ("server", FRONT_END_KEY) and len(path) == 3:
            known = list(FRONT_END_KEYS)
        else:
            known = list(SECTIONS.get(path[0], {}))
        close = difflib.get_close_matches(str(path[-1]), known, n=1, cutoff=0.6)
        if close:
            return f"unknown key (did you mean {close[0]!r}?)"
        whole = len(path) == 1 or path[0] == HOSTS_KEY or len(path) == 3
        return f"unknown key (known: {', '.join(known)})" if whole else message
    if message == "must be of dict type":
        return "must be a mapping of keys"
    if message == "must be of list type":
        return "must be a list"
    return _one_line(message)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a value of type {type(value).__name__}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
