"""``python -m anweddol_actors check [--uri URI] [--json]``: is this machine ready to serve?"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict, dataclass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check", help="check libvirt, domain type, image tools and graphviz on this machine"
    )
    parser.add_argument("--uri", default="qemu:///system", help="libvirt URI to check")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(func=run)


def _libvirt_checks(uri: str) -> list[Check]:
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.hypervisor import Hypervisor, HypervisorError
    from anweddol_actors.hypervisor.kvm import local_kvm_usable

    try:
        hypervisor = Hypervisor(uri)
    except HypervisorError as exc:
        return [
            Check("libvirt", False, f"{exc} (start it: scripts/start-libvirt)"),
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


def collect(uri: str) -> list[Check]:
    checks = _libvirt_checks(uri) + _image_checks()
    dot = shutil.which("dot")
    # Only the statecharts' SVG rendering needs graphviz; serving works without it.
    checks.append(
        Check(
            "graphviz dot", dot is not None, dot or "missing (apt install graphviz)", required=False
        )
    )
    return checks


def run(args: argparse.Namespace) -> int:
    checks = collect(args.uri)
    failed = [c for c in checks if c.required and not c.ok]
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.required else "warn")
            print(f"[{mark}] {c.name}: {c.detail}")
    return 1 if failed else 0
