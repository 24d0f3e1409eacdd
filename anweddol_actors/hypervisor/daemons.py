"""Start libvirt's daemons where no service manager does it (containers, CI runners).

The same steps as scripts/start-libvirt: virtlogd then libvirtd, each only when its pid
file does not name a live process, then wait until the URI answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import libvirt

from anweddol_actors.hypervisor.errors import HypervisorUnavailable
from anweddol_actors.hypervisor.events import silence_errors

DAEMONS = (("virtlogd", Path("/run/virtlogd.pid")), ("libvirtd", Path("/run/libvirtd.pid")))


def _pid_alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _answers(uri: str) -> bool:
    silence_errors()
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return False
    conn.close()
    return True


def ensure_daemons(uri: str = "qemu:///system", timeout: float = 30.0) -> bool:
    """Make ``uri`` answer, starting virtlogd/libvirtd if needed (root only).

    Returns True if a daemon was started. Only local qemu URIs are managed; for any other
    URI this only checks that it answers. Raises HypervisorUnavailable.
    """
    if _answers(uri):
        return False
    local_qemu = uri.startswith("qemu:///")
    if not local_qemu:
        raise HypervisorUnavailable(f"{uri} does not answer (not a local qemu URI to start)")
    if os.geteuid() != 0:
        raise HypervisorUnavailable(f"{uri} does not answer and starting libvirtd needs root")
    Path("/run/libvirt").mkdir(parents=True, exist_ok=True)
    started = False
    for name, pidfile in DAEMONS:
        if _pid_alive(pidfile):
            continue
        binary = shutil.which(name) or f"/usr/sbin/{name}"
        try:
            # -d: the daemon forks into the background itself; this call returns at once.
            subprocess.run([binary, "-d"], check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            raise HypervisorUnavailable(f"cannot start {name}: {exc}") from exc
        started = True
    deadline = time.monotonic() + timeout
    while not _answers(uri):
        if time.monotonic() >= deadline:
            raise HypervisorUnavailable(f"{uri} did not answer within {timeout:.0f}s")
        time.sleep(0.2)
    return started
