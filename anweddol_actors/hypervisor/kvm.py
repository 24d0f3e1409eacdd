"""Is hardware virtualisation usable on this host? (local checks, no libvirt)

Measured on the development machines (IMAGE-NOTES.md): /dev/kvm exists and libvirt lists
the ``kvm`` domain type, yet the host is itself a guest without nested virtualisation
exposed: a ``kvm`` domain with host-passthrough aborts in QEMU (MSR 0x10a), with qemu64 the
firmware alone takes seconds and the guest never reaches SSH. The CPU flags tell: no
``vmx``/``svm`` visible. So "kvm works" means: the CPU advertises vmx/svm, /dev/kvm opens
read-write with the stable API, and a one-instruction guest (HLT) runs to its exit, in a
child process with a time limit so that a hanging KVM cannot hang us.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

KVM_DEVICE = Path("/dev/kvm")
KVM_API_VERSION = 12
PROBE_TIME_LIMIT = 5.0

# Runs in a child interpreter: create a VM with 64 KiB of memory holding one HLT at 0x1000,
# one vCPU in real mode at 0x1000, run it, print the exit reason (KVM_EXIT_HLT is 5).
_HLT_PROBE = r"""
import ctypes, fcntl, mmap, os, struct
kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
vm = fcntl.ioctl(kvm, 0xAE01, 0)                      # KVM_CREATE_VM
mem = mmap.mmap(-1, 0x10000)
mem[0x1000:0x1001] = b"\xf4"                          # hlt
addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
fcntl.ioctl(vm, 0x4020AE46, struct.pack("IIQQQ", 0, 0, 0, 0x10000, addr))  # SET_USER_MEMORY_REGION
vcpu = fcntl.ioctl(vm, 0xAE41, 0)                     # KVM_CREATE_VCPU
size = fcntl.ioctl(kvm, 0xAE04, 0)                    # KVM_GET_VCPU_MMAP_SIZE
run = mmap.mmap(vcpu, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
sregs = bytearray(312)
fcntl.ioctl(vcpu, 0x8138AE83, sregs)                  # KVM_GET_SREGS
struct.pack_into("Q", sregs, 0, 0)                    # cs.base = 0
struct.pack_into("H", sregs, 12, 0)                   # cs.selector = 0
fcntl.ioctl(vcpu, 0x4138AE84, bytes(sregs))           # KVM_SET_SREGS
regs = bytearray(144)
struct.pack_into("Q", regs, 128, 0x1000)              # rip
struct.pack_into("Q", regs, 136, 2)                   # rflags
fcntl.ioctl(vcpu, 0x4090AE82, bytes(regs))            # KVM_SET_REGS
fcntl.ioctl(vcpu, 0xAE80, 0)                          # KVM_RUN
print(struct.unpack_from("I", run, 8)[0])
"""


def cpu_has_virtualisation_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return bool(flags & {"vmx", "svm"})
    return False


def kvm_device_usable(device: Path = KVM_DEVICE) -> bool:
    import fcntl

    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, 0xAE00) == KVM_API_VERSION  # KVM_GET_API_VERSION
    except OSError:
        return False
    finally:
        os.close(fd)


def kvm_runs_guest_code(time_limit: float = PROBE_TIME_LIMIT) -> bool:
    try:
        result = subprocess.run(
            [sys.executable, "-c", _HLT_PROBE],
            capture_output=True,
            text=True,
            timeout=time_limit,
            check=False,
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return result.returncode == 0 and result.stdout.strip() == "5"


@functools.cache
def local_kvm_usable() -> tuple[bool, str]:
    """(usable, why): the verdict for this host, computed once per process."""
    if not cpu_has_virtualisation_flags():
        return False, "CPU does not advertise vmx/svm (no (nested) hardware virtualisation)"
    if not kvm_device_usable():
        return False, f"{KVM_DEVICE} missing, not read-write, or wrong KVM API version"
    if not kvm_runs_guest_code():
        return False, "a minimal KVM guest did not run to completion"
    return True, "KVM usable"
