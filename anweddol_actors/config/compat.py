"""What a file written for the original server means here: one warning line per key whose
meaning changed, or that is accepted but not acted on.

Plain functions over the document as the file wrote it (before defaults), so that only
keys the file actually sets are warned about: the embedded default, and a file that
leaves a key out, give no warning for it. ``serve`` logs each line at start and
``config check`` prints them.

Not warned about: keys that work as they did (most of them), and ``server.user``,
``server.pid_file_path``, ``server.log_file_path`` and ``log_rotation.*``, which the
service commands act on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from anweddol_actors.config.model import ServerConfig

__all__ = ["NOT_ACTED_ON", "acted_on", "given_keys", "warnings"]

# Keys accepted so that the original's files load, and not acted on (a warning names each
# one a file sets); a section name alone stands for all of its keys.
NOT_ACTED_ON = (
    "container.wait_max_tryout",
    "web_server.log_file_path",
    "web_server.pid_file_path",
    "web_server.user",
)


def acted_on(document: dict[str, Any], given: tuple[str, ...]) -> dict:
    """``document`` (a configuration's ``to_dict()``) without the keys of
    ``NOT_ACTED_ON`` that the file did not set: what ``config show`` prints, so that a copy
    of it loads back without warnings about keys nobody wrote."""
    shown: dict[str, Any] = {}
    for section, keys in document.items():
        if not isinstance(keys, dict):
            shown[section] = keys  # the hypervisors list: all of it is acted on
            continue
        kept = {
            key: value
            for key, value in keys.items()
            if f"{section}.{key}" in given
            or not any(f"{section}.{key}" == k or section == k for k in NOT_ACTED_ON)
        }
        if kept:
            shown[section] = kept
    return shown


def given_keys(document: Mapping[str, Any] | None) -> tuple[str, ...]:
    """``section.key`` of every key the document sets, in the file's order."""
    return tuple(f"{section}.{key}" for section, key in _pairs(document))


def warnings(document: Mapping[str, Any] | None, config: ServerConfig) -> list[str]:
    """One line per key of ``document`` whose meaning changed from the original's, naming
    the key and what happens instead; ``config`` is the document once loaded."""
    given = tuple(_pairs(document))
    lines: list[str] = []
    for check in _CHECKS:
        lines.extend(check(given, config))
    return lines


def _pairs(document: Mapping[str, Any] | None) -> Iterator[tuple[str, str]]:
    if not isinstance(document, Mapping):
        return
    for section, keys in document.items():
        if isinstance(keys, Mapping):
            for key in keys:
                yield str(section), str(key)


# The (section, key) pairs the file sets, in its order.
Given = tuple[tuple[str, str], ...]


def _nat_interface(given: Given, config: ServerConfig) -> Iterator[str]:
    if ("container", "nat_interface_name") not in given:
        return
    name = config.container.nat_interface_name
    if ("container", "network_mode") not in given:
        # The original had no network_mode: its guests were always on this NAT bridge.
        yield (
            f"container.nat_interface_name ({name}) is set without container.network_mode: "
            f"guests use QEMU's user networking (no bridge), not the NAT bridge {name}; "
            "add 'network_mode: nat' to the container section to keep the original's bridge"
        )


def _wait_max_tryout(given: Given, config: ServerConfig) -> Iterator[str]:
    if ("container", "wait_max_tryout") in given:
        yield (
            "container.wait_max_tryout is not acted on: the wait for a new guest (its "
            "address in nat mode, then its SSH server) is bounded by container.ready_timeout "
            f"instead ({config.container.ready_timeout:g} s)"
        )


def _web_server(given: Given, config: ServerConfig) -> Iterator[str]:
    # The original's web server was a daemon of its own; here it runs inside serve.
    keys = [
        f"web_server.{key}"
        for section, key in given
        if section == "web_server" and key in ("log_file_path", "pid_file_path", "user")
    ]
    if keys:
        yield (
            f"{', '.join(keys)}: not acted on: the web server runs inside serve's process, "
            "which uses server.log_file_path, server.pid_file_path and server.user"
        )


_CHECKS: tuple[Callable[[Given, ServerConfig], Iterator[str]], ...] = (
    _nat_interface,
    _wait_max_tryout,
    _web_server,
)
