"""Values a file may hold that this machine cannot honour: one line each, naming the key.

The schema judges a file alone; these checks look at the host, so they run where the
file is about to be used (``serve``, ``config check``), not at every load: ``token list``
must not probe KVM.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from urllib.parse import urlsplit

from anweddol_actors.config.model import ServerConfig

__all__ = ["domain_type_problem", "file_problems", "host_problems", "user_problem"]


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
    if web.enabled and web.enable_ssl:
        # Read at start, before the privilege drop: a root-only key is fine for serve,
        # but config check run as another user says so, naming the file.
        for key in ("ssl_pem_certificate_file_path", "ssl_pem_private_key_file_path"):
            path = getattr(web, key)
            problem = _unreadable(Path(path)) if path else "not set"
            if problem:
                problems.append(f"web_server.{key}: {path}: {problem}")
    return problems


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
