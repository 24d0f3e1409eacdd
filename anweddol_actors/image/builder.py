"""Build the dev container image: a ~20 MB live ISO meeting the container image contract.

Everything comes from installed Debian packages (no download): the cloud kernel and a few
of its modules, static busybox, dropbear with the shared libraries it links, a tiny setuid
``sudo`` stand-in compiled here, ISOLINUX. The root file system is the initramfs itself.
The contract (DESIGN.md, docs/operations.md): DHCP on the first NIC, SSH on 22, user
``endpoint`` allowed to run ``sudo /bin/anweddol_container_setup.sh USER PORT`` with the
password on standard input (the script also takes the original's ``USER PASS PORT``), ACPI
power button powers off.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from anweddol_actors.errors import AnweddolError

# Bump when the image content changes so cached images are rebuilt.
BUILDER_VERSION = 2  # 2: the setup script reads the password on stdin

DEFAULT_IMAGE_DIR = Path("/var/lib/anweddol_actors/images")
DEFAULT_IMAGE_NAME = "anweddol-dev.iso"
ENDPOINT_USERNAME = "endpoint"
ENDPOINT_UID = 1000
SETUP_SCRIPT_GUEST_PATH = "/bin/anweddol_container_setup.sh"

# Guest modules: NIC (virtio) and the ACPI power button as an input device for acpid.
GUEST_MODULES = ("virtio_pci", "virtio_net", "button", "evdev")
GUEST_BINARIES = ("/usr/sbin/dropbear", "/usr/bin/dropbearkey")
BUSYBOX = "/bin/busybox"
ISOLINUX_BIN = Path("/usr/lib/ISOLINUX/isolinux.bin")
ISOHDPFX = Path("/usr/lib/ISOLINUX/isohdpfx.bin")
LDLINUX_C32 = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
FILES = Path(__file__).parent / "files"


class ImageBuildError(AnweddolError, RuntimeError):
    """The image cannot be built (missing tool or package, failing step)."""


@dataclass(frozen=True)
class Toolchain:
    """What the build needs from the host, found or not (``check`` reports it)."""

    kernel_version: str | None
    kernel_path: Path | None
    tools: dict[str, str | None]

    @property
    def missing(self) -> list[str]:
        missing = [name for name, path in self.tools.items() if path is None]
        if self.kernel_version is None:
            missing.insert(0, "kernel (linux-image-cloud-amd64)")
        return missing


def _version_key(version: str) -> list[tuple[int, int | str]]:
    # "6.1.0-56-cloud-amd64" sorts numerically by its numeric parts.
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.-]", version)]


def find_kernel() -> tuple[str, Path] | None:
    """The newest installed kernel with both an image in /boot and its modules.

    Cloud flavours come first: they are small and hold the virtio drivers.
    """
    candidates = []
    for vmlinuz in Path("/boot").glob("vmlinuz-*"):
        version = vmlinuz.name.removeprefix("vmlinuz-")
        if (Path("/lib/modules") / version / "modules.dep").exists():
            candidates.append((("cloud" in version), _version_key(version), version, vmlinuz))
    if not candidates:
        return None
    _, _, version, path = max(candidates)
    return version, path


def find_toolchain() -> Toolchain:
    kernel = find_kernel()
    tools: dict[str, str | None] = {
        "busybox (busybox-static)": BUSYBOX if _is_static(BUSYBOX) else None,
        "dropbear (dropbear-bin)": _existing(GUEST_BINARIES[0]),
        "dropbearkey (dropbear-bin)": _existing(GUEST_BINARIES[1]),
        "xorriso": shutil.which("xorriso"),
        "isolinux": _existing(ISOLINUX_BIN) and _existing(ISOHDPFX),
        "ldlinux.c32 (syslinux-common)": _existing(LDLINUX_C32),
        "modprobe (kmod)": shutil.which("modprobe") or _existing("/usr/sbin/modprobe"),
        "cpio": shutil.which("cpio"),
        "gcc + static libc (libc6-dev)": shutil.which("gcc")
        and _existing("/usr/lib/x86_64-linux-gnu/libc.a"),
        "ldd": shutil.which("ldd"),
    }
    return Toolchain(
        kernel_version=kernel[0] if kernel else None,
        kernel_path=kernel[1] if kernel else None,
        tools=tools,
    )


def _existing(path: str | Path) -> str | None:
    return str(path) if Path(path).exists() else None


def _is_static(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    # The dynamic busybox package has no shared-library-free build; check it is ELF and
    # trust the busybox-static package for the rest (ldd is checked at build time).
    return head == b"\x7fELF"


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)
    except FileNotFoundError as exc:
        raise ImageBuildError(f"{cmd[0]} not found") from exc
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip().splitlines()[-3:]
        raise ImageBuildError(f"{' '.join(cmd[:3])} failed: {' / '.join(detail)}") from exc


def module_load_order(kernel_version: str, modules=GUEST_MODULES) -> list[Path]:
    """Module files in load order (dependencies first), without duplicates."""
    out = _run(["modprobe", "-S", kernel_version, "-a", "--show-depends", *modules]).stdout
    order: list[Path] = []
    for line in out.splitlines():
        parts = line.split()
        # "builtin X" lines need nothing; "insmod PATH [params]" lines name a file.
        if len(parts) >= 2 and parts[0] == "insmod":
            path = Path(parts[1])
            if path not in order:
                order.append(path)
    if not order:
        raise ImageBuildError(f"no modules found for {', '.join(modules)} in {kernel_version}")
    return order


def shared_libraries(binary: str) -> list[Path]:
    """The shared libraries (and the loader) ``ldd`` names for a binary."""
    out = _run(["ldd", binary]).stdout
    libs = []
    for line in out.splitlines():
        match = re.search(r"(/\S+)\s+\(0x", line)
        if match:
            libs.append(Path(match.group(1)))
    return libs


def _copy_into(root: Path, src: Path, dest: str | None = None, mode: int | None = None) -> None:
    target = root / (dest or str(src)).lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Follow symlinks: the file is stored under the name the loader asks for.
    shutil.copyfile(src, target)
    os.chmod(target, mode if mode is not None else (src.stat().st_mode & 0o7777))


def _write(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    os.chmod(target, mode)


def _hash_password(password: str) -> str:
    # busybox is a build requirement anyway; Python's crypt module is deprecated.
    return _run([BUSYBOX, "mkpasswd", "-m", "sha512", "-P", "0"], input=password).stdout.strip()


def _compile_sudo(out: Path) -> None:
    _run(
        [
            "gcc",
            "-static",
            "-Os",
            "-s",
            f"-DENDPOINT_UID={ENDPOINT_UID}",
            "-o",
            str(out),
            str(FILES / "sudo.c"),
        ]
    )


def _populate_root(
    root: Path, kernel_version: str, endpoint_password: str, setup_script: Path | None
) -> None:
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "var/log",
        "root",
        "home",
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "root", 0o700)
    os.chmod(root / "tmp", 0o1777)

    _copy_into(root, Path(BUSYBOX), "/bin/busybox", 0o755)
    for binary in GUEST_BINARIES:
        _copy_into(root, Path(binary), mode=0o755)
        for lib in shared_libraries(binary):
            _copy_into(root, lib, mode=0o755)
    # glibc >= 2.34 has nss_files built in; older ones need the module for getpwnam.
    for nss in Path("/lib/x86_64-linux-gnu").glob("libnss_files.so.2"):
        _copy_into(root, nss, mode=0o755)

    modules = module_load_order(kernel_version)
    module_root = Path("/lib/modules") / kernel_version
    order_lines = []
    for module in modules:
        rel = module.relative_to(module_root)
        if module.suffix != ".ko":
            raise ImageBuildError(f"compressed kernel module not supported: {module}")
        _copy_into(root, module, f"/lib/modules/{rel}", 0o644)
        order_lines.append(str(rel))
    _write(root, "/etc/modules.order", "\n".join(order_lines) + "\n")

    _copy_into(root, FILES / "init", "/init", 0o755)
    _copy_into(root, FILES / "inittab", "/etc/inittab", 0o644)
    _copy_into(root, FILES / "udhcpc.script", "/etc/udhcpc.script", 0o755)
    _copy_into(root, FILES / "power-button", "/etc/acpi/PWRF/00000080", 0o755)
    _copy_into(
        root, setup_script or FILES / "anweddol_container_setup.sh", SETUP_SCRIPT_GUEST_PATH, 0o755
    )
    _compile_sudo(root / "bin" / "sudo")
    os.chmod(root / "bin" / "sudo", 0o4755)

    u = ENDPOINT_UID
    _write(
        root,
        "/etc/passwd",
        f"root:x:0:0:root:/root:/bin/sh\n"
        f"{ENDPOINT_USERNAME}:x:{u}:{u}:endpoint:/home/{ENDPOINT_USERNAME}:/bin/sh\n",
    )
    _write(root, "/etc/group", f"root:x:0:\ntty:x:5:\n{ENDPOINT_USERNAME}:x:{u}:\n")
    # root has no usable password: only the serial console getty could ask for one.
    _write(
        root,
        "/etc/shadow",
        f"root:*:19000:0:99999:7:::\n"
        f"{ENDPOINT_USERNAME}:{_hash_password(endpoint_password)}:19000:0:99999:7:::\n",
        0o600,
    )
    # dropbear refuses users whose shell is not listed here.
    _write(root, "/etc/shells", "/bin/sh\n/bin/ash\n")
    _write(root, "/etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\n")
    _write(root, "/etc/hostname", "anweddol-container\n")
    home = root / "home" / ENDPOINT_USERNAME
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, u, u)
    os.chmod(home, 0o700)


def _make_initramfs(root: Path, out: Path) -> None:
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    listing = "\n".join(["."] + files) + "\n"
    # cpio works on bytes; ownership is kept as staged (endpoint's home is uid 1000).
    result = subprocess.run(
        ["cpio", "--quiet", "-o", "-H", "newc"],
        input=listing.encode(),
        cwd=root,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise ImageBuildError(f"cpio failed: {result.stderr.decode().strip()}")
    with gzip.open(out, "wb", compresslevel=9) as f:
        f.write(result.stdout)


def build_image(
    out: Path,
    *,
    endpoint_password: str = "endpoint",
    setup_script: Path | None = None,
) -> Path:
    """Build the dev image into ``out`` and write its sidecar ``out + '.json'``.

    ``endpoint_password`` and ``setup_script`` exist for tests that inject failures (an image
    whose endpoint password differs, a setup script that fails); production uses defaults.
    Must run as root (the initramfs holds root-owned and setuid files).
    """
    out = Path(out)
    toolchain = find_toolchain()
    if toolchain.missing:
        raise ImageBuildError("missing: " + ", ".join(toolchain.missing))
    if setup_script is not None and not Path(setup_script).is_file():
        raise ImageBuildError(f"setup script not found: {setup_script}")
    assert toolchain.kernel_version and toolchain.kernel_path
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="anweddol-image-") as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "root"
        iso_tree = tmp_path / "iso"
        root.mkdir()
        _populate_root(root, toolchain.kernel_version, endpoint_password, setup_script)
        (iso_tree / "boot").mkdir(parents=True)
        (iso_tree / "isolinux").mkdir()
        _make_initramfs(root, iso_tree / "boot" / "initrd.gz")
        shutil.copyfile(toolchain.kernel_path, iso_tree / "boot" / "vmlinuz")
        shutil.copyfile(ISOLINUX_BIN, iso_tree / "isolinux" / "isolinux.bin")
        shutil.copyfile(LDLINUX_C32, iso_tree / "isolinux" / "ldlinux.c32")
        shutil.copyfile(FILES / "isolinux.cfg", iso_tree / "isolinux" / "isolinux.cfg")
        tmp_iso = tmp_path / "image.iso"
        _run(
            [
                "xorriso",
                "-as",
                "mkisofs",
                "-quiet",
                "-o",
                str(tmp_iso),
                "-isohybrid-mbr",
                str(ISOHDPFX),
                "-b",
                "isolinux/isolinux.bin",
                "-c",
                "isolinux/boot.cat",
                "-no-emul-boot",
                "-boot-load-size",
                "4",
                "-boot-info-table",
                "-V",
                "ANWEDDOL",
                "-R",
                "-J",
                str(iso_tree),
            ]
        )
        # Same folder as the target, so the rename below is atomic.
        staged = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        shutil.copyfile(tmp_iso, staged)
    os.chmod(staged, 0o644)
    os.replace(staged, out)
    _sidecar(out).write_text(json.dumps(image_metadata(toolchain.kernel_version), indent=2) + "\n")
    return out


def image_metadata(kernel_version: str) -> dict:
    return {"builder_version": BUILDER_VERSION, "kernel_version": kernel_version}


def _sidecar(image: Path) -> Path:
    return image.with_name(image.name + ".json")


def default_image_path() -> Path:
    """Where the embedded configuration's image lives; libvirt-qemu can traverse to it."""
    return DEFAULT_IMAGE_DIR / DEFAULT_IMAGE_NAME


def image_is_current(image: Path) -> bool:
    """True when ``image`` exists and was built by this builder for the installed kernel."""
    try:
        recorded = json.loads(_sidecar(image).read_text())
    except (OSError, ValueError):
        return False
    kernel = find_kernel()
    if not image.is_file() or kernel is None:
        return image.is_file() and kernel is None
    return recorded == image_metadata(kernel[0])


@contextlib.contextmanager
def _build_lock(image: Path) -> Iterator[None]:
    lock_path = image.with_name(f".{image.name}.lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def make_traversable(folder: Path) -> None:
    # libvirt runs QEMU as libvirt-qemu, which must reach the ISO through every parent.
    folder.mkdir(parents=True, exist_ok=True)
    for part in [folder, *folder.parents]:
        if part == Path("/"):
            break
        mode = part.stat().st_mode
        if mode & 0o001 == 0:
            os.chmod(part, mode | 0o011)


def ensure_image(path: Path | None = None) -> Path:
    """Return the dev image path, building it first if absent or built for another kernel.

    Concurrent callers (several servers, test workers) serialise on a lock file; the image
    appears atomically (built aside, then renamed).
    """
    image = Path(path) if path is not None else default_image_path()
    make_traversable(image.parent)
    if image_is_current(image):
        return image
    with _build_lock(image):
        if not image_is_current(image):
            build_image(image)
    return image
