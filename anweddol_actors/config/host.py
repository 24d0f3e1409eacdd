"""Values a file may hold that this machine cannot honour: one line each, naming the key.

The schema judges a file alone; these checks look at the host, so they run where the
file is about to be used (``serve``, ``config check``), not at every load: ``token list``
must not probe KVM.
"""

from __future__ import annotations

import os
import pwd
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from anweddol_actors.config.model import ServerConfig

__all__ = [
    "domain_type_problem",
    "file_problems",
    "host_problems",
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
    if container.domain_type != "kvm" or not _is_local_qemu(container.libvirt_uri):
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
        f"container.domain_type: kvm is not usable on this host ({why}); "
        "set it to auto (kvm where it works, else emulation) or qemu"
    )


def file_problems(config: ServerConfig) -> list[str]:
    """Files the configuration names that must exist and cannot be read."""
    problems = []
    iso = config.container.container_iso_file_path
    if iso is not None:
        problem = _unreadable(Path(iso))
        if problem:
            problems.append(f"container.container_iso_file_path: {iso}: {problem}")
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
