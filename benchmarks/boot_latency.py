"""Bare boot latency of the dev image: domain create -> SSH banner, and -> endpoint login.

    .venv/bin/python benchmarks/boot_latency.py [--runs 3] [--uri qemu:///system]
        [--memory 256] [--vcpus 1] [--iso PATH]

Each run boots one transient domain (QEMU user networking, loopback forward port), waits
for the banner, logs in as endpoint, runs the setup script, logs in as the new user,
then destroys the domain. Prints each run and the medians. Reference for CREATE latency.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

from anweddol_actors.guest import EndpointShell, generate_credentials
from anweddol_actors.hypervisor import DomainSpec, Hypervisor, ensure_daemons, wait_for_ssh_banner
from anweddol_actors.image.builder import ensure_image

FORWARD_PORTS = range(20000, 30000)


def one_run(hv: Hypervisor, iso: Path, memory: int, vcpus: int) -> dict[str, float]:
    spec = DomainSpec(
        uuid=str(uuid.uuid4()),
        memory_mib=memory,
        vcpus=vcpus,
        iso_path=iso,
        domain_type=hv.detect_domain_type(),
        network="user",
        forward_port=FORWARD_PORTS.start,
    )
    t0 = time.monotonic()
    handle = hv.create_domain_on_free_port(spec, FORWARD_PORTS)
    try:
        created = time.monotonic() - t0
        host, port = hv.guest_address(handle.spec)
        wait_for_ssh_banner(host, port, deadline=t0 + 120)
        banner = time.monotonic() - t0
        shell = EndpointShell(host, port)
        shell.open()
        login = time.monotonic() - t0
        username, password = generate_credentials()
        s0 = time.monotonic()
        shell.administer(username, password)
        setup = time.monotonic() - s0
        shell.close()
        with EndpointShell(host, port, username=username, password=password) as user_shell:
            out, _err, status = user_shell.execute("id -un")
            assert status == 0 and out.strip() == username, (out, status)
        user_login = time.monotonic() - t0
    finally:
        hv.destroy_domain(handle.uuid)
    return {
        "create": created,
        "banner": banner,
        "endpoint_login": login,
        "setup_script": setup,
        "user_login": user_login,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--uri", default="qemu:///system")
    parser.add_argument("--memory", type=int, default=256, help="MiB")
    parser.add_argument("--vcpus", type=int, default=1)
    parser.add_argument("--iso", type=Path, default=None, help="default: the dev image")
    args = parser.parse_args(argv)

    ensure_daemons(args.uri)
    t = time.monotonic()
    iso = args.iso or ensure_image()
    print(f"image: {iso} ({iso.stat().st_size / 1e6:.1f} MB, ready in {time.monotonic() - t:.1f}s)")
    runs = []
    with Hypervisor(args.uri) as hv:
        print(f"domain type: {hv.detect_domain_type()}, {args.memory} MiB, {args.vcpus} vCPU")
        for i in range(args.runs):
            r = one_run(hv, iso, args.memory, args.vcpus)
            runs.append(r)
            print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in r.items()))
    print(
        "median: " + ", ".join(f"{k} {statistics.median(r[k] for r in runs):.2f}s" for k in runs[0])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
