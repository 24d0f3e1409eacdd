"""Values a file may hold that this machine cannot honour: one line each, naming the key.

The schema judges a file alone; these checks look at the host, so they run where the
file is about to be used (``serve``, ``config check``), not at every load: ``token list``
must not probe KVM.
"""

from __future__ import annotations

import os
import pwd
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from anweddol_actors.config.model import ServerConfig
from anweddol_actors.config.schema import HOSTS_KEY, is_local_uri

__all__ = [
    "IsoPlace",
    "domain_type_problem",
    "file_problems",
    "host_problems",
    "iso_places",
    "iso_problems",
    "tls_problem",
    "user_problem",
]


def host_problems(config: ServerConfig) -> list[str]:
    """Every problem of ``config`` on this host (``config check``)."""
    problems = [domain_type_problem(config), user_problem(config)]
    return [problem for problem in problems if problem] + file_problems(config)


def user_problem(config: ServerConfig) -> str | None:
    """``server.user`` names no account of this host (``serve`` would refuse it)."""
    name = config.server.user
    if not name:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError:
        return f"server.user: no such user {name!r}"
    return None


def domain_type_problem(config: ServerConfig) -> str | None:
    """Why ``domain_type: kvm`` cannot work here, or None.

    The original's default was ``kvm``; where hardware virtualisation is absent (a virtual
    machine without nested virtualisation) a kvm domain aborts or hangs at every CREATE,
    so the server refuses to start instead. Only a local hypervisor can be judged: a
    remote one (``qemu+ssh://host/system``) is trusted, as ``auto`` trusts it.
    """
    container = config.container
    # Each host that would run kvm domains here: the container section's, or, with a
    # hypervisors list, each entry (its own domain_type, else the section's).
    candidates = [("container.domain_type", container.domain_type, container.libvirt_uri)]
    if config.hypervisors:
        candidates = [
            (
                f"{HOSTS_KEY}[{index}].domain_type"
                if host.domain_type is not None
                else "container.domain_type",
                host.domain_type or container.domain_type,
                host.libvirt_uri,
            )
            for index, host in enumerate(config.hypervisors)
        ]
    keys = [key for key, kind, uri in candidates if kind == "kvm" and _is_local_qemu(uri)]
    if not keys:
        return None
    # Loaded here, not at the top: only a file that asks for kvm pays for the probe.
    from anweddol_actors.hypervisor.kvm import (
        KVM_DEVICE,
        cpu_has_virtualisation_flags,
        local_kvm_usable,
    )

    if not cpu_has_virtualisation_flags():
        why = "the CPU does not advertise vmx/svm (no (nested) hardware virtualisation)"
    elif not KVM_DEVICE.exists():
        why = f"{KVM_DEVICE} does not exist (kvm module not loaded?)"
    elif not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        # libvirt's QEMU opens the device as its own user: our access proves nothing.
        return None
    else:
        usable, why = local_kvm_usable()
        if usable:
            return None
    return (
        f"{keys[0]}: kvm is not usable on this host ({why}); "
        "set it to auto (kvm where it works, else emulation) or qemu"
    )


def file_problems(config: ServerConfig) -> list[str]:
    """Files the configuration names that must exist and cannot be read."""
    problems = iso_problems(
        iso_places(
            config.container.container_iso_file_path,
            config.container.libvirt_uri,
            [(h.name, h.libvirt_uri, h.container_iso_file_path) for h in config.hypervisors],
        )
    )
    server = config.server
    if not server.enable_onetime_rsa_keys:
        # A missing pair is generated at start; one that exists must be readable.
        private = Path(server.private_rsa_key_file_path)
        problem = _unreadable(private) if private.exists() else None
        if problem:
            problems.append(f"server.private_rsa_key_file_path: {private}: {problem}")
    web = config.web_server
    if web.enable_ssl:
        # Whether or not web_server.enabled: serve --web turns it on. Read at start, before
        # the privilege drop: a root-only key is fine for serve, but config check run as
        # another user says so, naming the file.
        problem = tls_problem(web.ssl_pem_certificate_file_path, web.ssl_pem_private_key_file_path)
        if problem:
            problems.append(problem)
    return problems


@dataclass(frozen=True)
class IsoPlace:
    """A container ISO a host boots, and the configuration key that names it."""

    key: str  # container.container_iso_file_path, or hypervisors[N].container_iso_file_path
    path: str
    host: str | None  # None: the server's one host (no hypervisors list)
    libvirt_uri: str

    @property
    def checked(self) -> bool:
        """Whether this machine checks the file: a host of the list on this machine (its
        URI has no host part) boots the file this machine reads, a remote one boots its
        own disk's. Without a list the one ISO is checked, whatever the URI, as it was
        before the list existed."""
        return self.host is None or is_local_uri(self.libvirt_uri)


def iso_places(
    server_iso: str | None,
    server_uri: str,
    hosts: Sequence[tuple[str, str, str | None]],
) -> list[IsoPlace]:
    """The ISO each host boots: its override, else the server's (``server_iso``; None, the
    dev image, is left out: it is built here at start). ``hosts``: (name, libvirt URI,
    override) of each ``hypervisors`` entry; empty, the one host of ``server_uri``.
    A file is listed once per place it is read from (this machine, or each remote host)."""
    key = "container.container_iso_file_path"
    if not hosts:
        return [] if server_iso is None else [IsoPlace(key, server_iso, None, server_uri)]
    places: dict[tuple[str, str | None], IsoPlace] = {}
    for index, (name, uri, override) in enumerate(hosts):
        path = override or server_iso
        if path is None:
            continue
        place = IsoPlace(
            f"{HOSTS_KEY}[{index}].container_iso_file_path" if override else key, path, name, uri
        )
        # Local hosts read one file; each remote host reads its own copy.
        places.setdefault((path, None if place.checked else name), place)
    return list(places.values())


def iso_problems(places: Sequence[IsoPlace]) -> list[str]:
    """``KEY: PATH: problem`` for each local ISO this machine cannot read (remote hosts'
    files are not judged: they are on those hosts' disks)."""
    problems = []
    for place in places:
        problem = _unreadable(Path(place.path)) if place.checked else None
        if problem:
            problems.append(f"{place.key}: {place.path}: {problem}")
    return problems


def tls_problem(certificate: str | None, key: str | None) -> str | None:
    """Why the PEM pair cannot serve HTTPS, naming the key and the file: unreadable, not a
    certificate, not a private key, encrypted (a service cannot type its password), or not
    the certificate's key; None when it can."""
    for path, name in (
        (certificate, "ssl_pem_certificate_file_path"),
        (key, "ssl_pem_private_key_file_path"),
    ):
        problem = _unreadable(Path(path)) if path else "not set"
        if problem:
            return f"web_server.{name}: {path}: {problem}"
    assert certificate is not None and key is not None
    try:
        ssl.create_default_context().load_verify_locations(certificate)
    except (ssl.SSLError, ValueError) as exc:
        return (
            f"web_server.ssl_pem_certificate_file_path: {certificate}: not a PEM certificate"
            f" ({_reason(exc)})"
        )
    try:
        serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
    except TypeError:
        # cryptography's word for "encrypted, and no password given".
        return (
            f"web_server.ssl_pem_private_key_file_path: {key}: the key is encrypted (a"
            " service cannot type its password): write it unencrypted, readable by root"
            " only (openssl pkey -in KEY -out PLAIN)"
        )
    except (ValueError, UnsupportedAlgorithm) as exc:
        return f"web_server.ssl_pem_private_key_file_path: {key}: not a PEM private key ({exc})"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certificate, key)
    except (ssl.SSLError, ValueError) as exc:
        return (
            f"web_server.ssl_pem_private_key_file_path: {key}: not the private key of"
            f" {certificate} ({_reason(exc)})"
        )
    return None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or str(exc) or type(exc).__name__


def _unreadable(path: Path) -> str | None:
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "is a directory"
    if not os.access(path, os.R_OK):
        return "not readable by this user"
    return None


def _is_local_qemu(uri: str) -> bool:
    # "qemu:///system" has no host part; "qemu+ssh://host/system" has one.
    parts = urlsplit(uri)
    return parts.scheme.split("+")[0] == "qemu" and not parts.netloc
