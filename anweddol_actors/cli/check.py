"""``python -m anweddol_actors check [-c FILE] [--uri URI] [--json]``: is this machine
ready to serve? libvirt (the configured URI, or each host of the ``hypervisors`` list),
the image tools, and the server's RSA key, whose fingerprint it prints: what clients are
given to check the server's key against.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from anweddol_actors.cli import CliError
from anweddol_actors.cli.configfile import add_config_option, load
from anweddol_actors.cli.output import emit, emit_failure


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check libvirt, domain type, image tools, the RSA key and graphviz on this machine",
    )
    add_config_option(parser)
    parser.add_argument(
        "--uri",
        help="libvirt URI to check (default: the configuration's container.libvirt_uri, or "
        "each host of its hypervisors list)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(func=run)


def _host_checks(uri: str, host: str | None) -> list[Check]:
    """libvirt and the domain type of one host; each check's name says which host."""
    checks = _libvirt_checks(uri)
    if host is not None:
        for check in checks:
            check.name = f"{check.name} ({host})"
    return checks


def _libvirt_checks(uri: str) -> list[Check]:
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.config.schema import is_local_uri
    from anweddol_actors.hypervisor import Hypervisor, HypervisorError
    from anweddol_actors.hypervisor.kvm import local_kvm_usable

    try:
        hypervisor = Hypervisor(uri)
    except HypervisorError as exc:
        # Only this machine's libvirt is started by that script; a remote host's is its own.
        hint = " (start it: scripts/start-libvirt)" if is_local_uri(uri) else ""
        return [
            Check("libvirt", False, f"{exc}{hint}"),
            Check("domain type", False, "libvirt unreachable"),
        ]
    with hypervisor:
        checks = [Check("libvirt", True, f"{uri} answers")]
        try:
            domain_type = hypervisor.detect_domain_type()
        except HypervisorError as exc:
            checks.append(Check("domain type", False, str(exc)))
        else:
            why = "" if domain_type != "qemu" else f" (emulation: {local_kvm_usable()[1]})"
            checks.append(Check("domain type", True, domain_type + why))
    return checks


def _image_checks() -> list[Check]:
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.image.builder import default_image_path, find_toolchain, image_is_current

    toolchain = find_toolchain()
    checks = [
        Check(
            "kernel",
            toolchain.kernel_version is not None,
            toolchain.kernel_version or "no kernel with modules in /boot (linux-image-cloud-amd64)",
        )
    ]
    for name, path in toolchain.tools.items():
        checks.append(Check(name, path is not None, path or "missing"))
    image = default_image_path()
    if image_is_current(image):
        detail, ok = f"{image} (current)", True
    elif not toolchain.missing:
        detail, ok = f"{image} absent or stale; buildable (built on first use)", True
    else:
        detail, ok = f"{image} absent and not buildable", False
    checks.append(Check("dev image", ok, detail))
    return checks


def _key_check(server) -> Check:
    """The configured RSA key and its fingerprint (made at first start when missing)."""
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.cli.keyfiles import key_fingerprint, load_private_key

    if server.enable_onetime_rsa_keys:
        return Check("RSA key", True, "one-time keys: a new pair at every start")
    path = Path(server.private_rsa_key_file_path)
    if not path.exists():
        return Check("RSA key", True, f"{path} absent: made at first start")
    try:
        wrapper = load_private_key(path)
    except CliError as exc:
        return Check("RSA key", False, str(exc))
    return Check("RSA key", True, f"{path}, fingerprint (SHA-256) {key_fingerprint(wrapper)}")


def collect(uri: str, server=None, hosts: tuple = ()) -> list[Check]:
    """The checks of this machine: libvirt at ``uri``, or at each of ``hosts`` (the
    configuration's ``hypervisors`` entries) when there are any."""
    if hosts:
        checks = [check for host in hosts for check in _host_checks(host.libvirt_uri, host.name)]
    else:
        checks = _libvirt_checks(uri)
    checks += _image_checks()
    if server is not None:
        checks.append(_key_check(server))
    dot = shutil.which("dot")
    # Only the statecharts' SVG rendering needs graphviz; serving works without it.
    checks.append(
        Check(
            "graphviz dot", dot is not None, dot or "missing (apt install graphviz)", required=False
        )
    )
    return checks


def run(args: argparse.Namespace) -> int:
    loaded = load(args)
    config = loaded.config
    hosts = () if args.uri else config.hypervisors
    checks = collect(args.uri or config.container.libvirt_uri, config.server, hosts)
    failed = [c for c in checks if c.required and not c.ok]
    lines = [f"configuration: {loaded.source}"]
    for c in checks:
        mark = "ok  " if c.ok else ("FAIL" if c.required else "warn")
        lines.append(f"[{mark}] {c.name}: {c.detail}")
    # The original's shape (reference/cli_json_output.md, ``start -c``), with each check.
    data = {
        "errors_recorded": len(failed),
        "errors_list": [f"{c.name}: {c.detail}" for c in failed],
        "checks": [asdict(c) for c in checks],
    }
    if failed:
        return emit_failure(args, "Errors detected on server environment", data, "\n".join(lines))
    return emit(args, "Check done", data, "\n".join(lines))
