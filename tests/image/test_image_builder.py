"""The dev image builder: what goes into the ISO, and the guest's own scripts run for real
in a chroot of the built initramfs (setup script, sudo stand-in) — no guest boot needed."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from anweddol_actors.image import builder
from anweddol_actors.image.builder import build_image, ensure_image, find_kernel, image_is_current

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="building the image needs root")

WORK_ROOT = Path("/var/lib/anweddol_actors/test-images")


@pytest.fixture(scope="module")
def workdir():
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    # Not under /tmp: the chroot tests need setuid honoured (no nosuid mount).
    folder = Path(tempfile.mkdtemp(prefix="builder-", dir=WORK_ROOT))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def built(workdir):
    return build_image(workdir / "dev.iso")


def _extract(iso: Path, inside: str, dest: Path) -> Path:
    subprocess.run(
        ["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", inside, str(dest)],
        check=True,
        capture_output=True,
    )
    return dest


@pytest.fixture(scope="module")
def rootfs(built, workdir):
    initrd = _extract(built, "/boot/initrd.gz", workdir / "initrd.gz")
    root = workdir / "rootfs"
    root.mkdir()
    subprocess.run(
        ["cpio", "--quiet", "-idm"],
        input=gzip.decompress(initrd.read_bytes()),
        cwd=root,
        check=True,
    )
    # What /init does first in the guest: the busybox applet links.
    subprocess.run(["chroot", str(root), "/bin/busybox", "--install", "-s"], check=True)
    return root


@pytest.fixture
def fresh_root(rootfs, tmp_path_factory):
    """A private copy of the root file system, for tests that change its accounts."""
    copy = Path(tempfile.mkdtemp(prefix="rootfs-", dir=rootfs.parent))
    shutil.copytree(rootfs, copy, symlinks=True, dirs_exist_ok=True)
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


def _in_guest(
    root: Path, *args: str, user: str | None = None, stdin: str = ""
) -> subprocess.CompletedProcess:
    cmd = ["chroot"] + ([f"--userspec={user}"] if user else []) + [str(root), *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, env={"PATH": "/bin:/sbin"}, input=stdin
    )


SETUP = ("/bin/sh", "/bin/anweddol_container_setup.sh")


def test_iso_size_sidecar_and_boot_files(built):
    size = built.stat().st_size
    assert 10e6 < size < 40e6
    sidecar = json.loads(Path(str(built) + ".json").read_text())
    assert sidecar == {
        "builder_version": builder.BUILDER_VERSION,
        "kernel_version": find_kernel()[0],
    }
    listing = subprocess.run(
        ["xorriso", "-indev", str(built), "-find", "/", "-type", "f"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in (
        "/boot/vmlinuz",
        "/boot/initrd.gz",
        "/isolinux/isolinux.bin",
        "/isolinux/ldlinux.c32",
        "/isolinux/isolinux.cfg",
    ):
        assert f"'{name}'" in listing


def test_rootfs_contract_files(rootfs):
    sudo = rootfs / "bin/sudo"
    assert sudo.stat().st_mode & stat.S_ISUID and sudo.stat().st_uid == 0
    assert os.access(rootfs / "bin/anweddol_container_setup.sh", os.X_OK)
    assert os.access(rootfs / "init", os.X_OK)
    assert (rootfs / "usr/sbin/dropbear").exists()
    assert stat.S_IMODE((rootfs / "etc/shadow").stat().st_mode) == 0o600
    assert "/bin/sh" in (rootfs / "etc/shells").read_text()
    assert (rootfs / "etc/acpi/PWRF/00000080").exists()
    # Modules: dependencies before dependants, all present, matching the kernel.
    order = (rootfs / "etc/modules.order").read_text().split()
    names = [Path(m).name for m in order]
    assert names.index("virtio.ko") < names.index("virtio_pci.ko")
    assert names.index("virtio_ring.ko") < names.index("virtio_net.ko")
    assert {"button.ko", "evdev.ko"} <= set(names)
    for module in order:
        assert (rootfs / "lib/modules" / module).is_file()


def test_dropbear_runs_in_the_image(rootfs):
    # Every shared library it needs was copied: it starts and prints its version.
    result = _in_guest(rootfs, "/usr/sbin/dropbear", "-V")
    assert "Dropbear" in (result.stdout + result.stderr)


def test_endpoint_password_hash_matches(rootfs):
    shadow = dict(
        line.split(":", 2)[:2] for line in (rootfs / "etc/shadow").read_text().splitlines()
    )
    hashed = shadow["endpoint"]
    assert hashed.startswith("$6$")
    salt = hashed.split("$")[2]
    again = _in_guest(rootfs, "/bin/busybox", "mkpasswd", "-m", "sha512", "-S", salt, "endpoint")
    assert again.stdout.strip() == hashed


def test_setup_script_declares_the_stdin_contract(rootfs):
    # What the server looks for before it keeps the password off the command line.
    script = (rootfs / "bin/anweddol_container_setup.sh").read_text().splitlines()
    assert "# anweddol-container-contract: password-on-stdin" in script


def test_setup_script_creates_the_user_silently_and_locks_endpoint(fresh_root):
    # The password on standard input: nothing of it in any process's command line.
    result = _in_guest(fresh_root, *SETUP, "user_54321", "22", stdin="Secret123\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    passwd = (fresh_root / "etc/passwd").read_text()
    assert "user_54321:x:1001:1001::/home/user_54321:/bin/sh" in passwd
    shadow = (fresh_root / "etc/shadow").read_text()
    assert "\nendpoint:!$6$" in shadow
    user_hash = [line for line in shadow.splitlines() if line.startswith("user_54321:")][0]
    salt = user_hash.split(":")[1].split("$")[2]
    expected = _in_guest(
        fresh_root, "/bin/busybox", "mkpasswd", "-m", "sha512", "-S", salt, "Secret123"
    ).stdout.strip()
    assert user_hash.split(":")[1] == expected
    home = fresh_root / "home/user_54321"
    assert home.stat().st_uid == 1001 and stat.S_IMODE(home.stat().st_mode) == 0o700
    # A second user (the original's argv form, still accepted) gets the next uid; endpoint
    # stays locked once (no "!!").
    again = _in_guest(fresh_root, *SETUP, "user_54322", "Other456", "22")
    assert (again.returncode, again.stderr) == (0, "")
    assert "user_54322:x:1002:" in (fresh_root / "etc/passwd").read_text()
    assert "endpoint:!!" not in (fresh_root / "etc/shadow").read_text()


def test_setup_script_takes_a_last_line_without_newline(fresh_root):
    result = _in_guest(fresh_root, *SETUP, "user_54323", "22", stdin="NoNewline9")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    user_hash = [
        line
        for line in (fresh_root / "etc/shadow").read_text().splitlines()
        if line.startswith("user_54323:")
    ][0]
    salt = user_hash.split(":")[1].split("$")[2]
    expected = _in_guest(
        fresh_root, "/bin/busybox", "mkpasswd", "-m", "sha512", "-S", salt, "NoNewline9"
    ).stdout.strip()
    assert user_hash.split(":")[1] == expected


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["user_1", "22"], "", "no password on standard input"),
        (["user_1", "22"], "pw d\n", "invalid password"),
        (["User-1", "22"], "pw\n", "invalid username"),
        (["user_1", "0"], "pw\n", "invalid port"),
    ],
)
def test_setup_script_refuses_bad_stdin_input(fresh_root, args, stdin, message):
    before = (fresh_root / "etc/shadow").read_text()
    result = _in_guest(fresh_root, *SETUP, *args, stdin=stdin)
    assert (result.returncode, result.stdout) == (1, "")
    assert message in result.stderr
    assert (fresh_root / "etc/shadow").read_text() == before  # endpoint not locked


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "usage"),
        (["user_1"], "usage"),
        (["user_1", "pw", "22", "extra"], "usage"),
        (["User-1", "pw", "22"], "invalid username"),
        (["endpoint", "pw", "22"], "reserved username"),
        (["user_1", "pw d", "22"], "invalid password"),
        (["user_1", "x" * 101, "22"], "invalid password"),
        (["user_1", "pw", "0"], "invalid port"),
        (["user_1", "pw", "70000"], "invalid port"),
        (["user_1", "pw", "2x"], "invalid port"),
        (["root", "pw", "22"], "reserved username"),
    ],
)
def test_setup_script_refuses_bad_arguments(fresh_root, args, message):
    before = (fresh_root / "etc/shadow").read_text()
    result = _in_guest(fresh_root, "/bin/sh", "/bin/anweddol_container_setup.sh", *args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert message in result.stderr
    assert (fresh_root / "etc/shadow").read_text() == before  # endpoint not locked


def test_sudo_stand_in_lets_endpoint_run_only_the_setup_script(fresh_root):
    ok = _in_guest(
        fresh_root,
        "/bin/sudo",
        "/bin/anweddol_container_setup.sh",
        "user_11111",
        "22",
        user="1000:1000",
        stdin="Pw1\n",
    )
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", "")
    assert "user_11111:" in (fresh_root / "etc/passwd").read_text()
    other = _in_guest(fresh_root, "/bin/sudo", "/bin/sh", "-c", "id", user="1000:1000")
    assert other.returncode == 1 and "only /bin/anweddol_container_setup.sh" in other.stderr
    stranger = _in_guest(
        fresh_root,
        "/bin/sudo",
        "/bin/anweddol_container_setup.sh",
        "user_22222",
        "Pw2",
        "22",
        user="1001:1001",
    )
    assert stranger.returncode == 1 and "permission denied" in stranger.stderr


def test_ensure_image_builds_once_and_rebuilds_for_another_kernel(workdir, monkeypatch):
    target = workdir / "cache" / "dev.iso"
    builds: list[Path] = []
    real_build = builder.build_image

    def counting_build(out, **kwargs):
        builds.append(out)
        return real_build(out, **kwargs)

    monkeypatch.setattr(builder, "build_image", counting_build)
    threads = [threading.Thread(target=ensure_image, args=(target,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1  # the lock made the other two wait, then find it current
    assert image_is_current(target)
    assert ensure_image(target) == target and len(builds) == 1
    # No temporary file left next to the image.
    assert sorted(p.name for p in target.parent.iterdir()) == [
        ".dev.iso.lock",
        "dev.iso",
        "dev.iso.json",
    ]
    sidecar = Path(str(target) + ".json")
    sidecar.write_text(
        json.dumps({"builder_version": builder.BUILDER_VERSION, "kernel_version": "0.0.0-old"})
    )
    assert not image_is_current(target)
    ensure_image(target)
    assert len(builds) == 2 and image_is_current(target)
    # Every folder up to the image is traversable by libvirt-qemu.
    for folder in [target.parent, *target.parent.parents]:
        assert folder.stat().st_mode & 0o001


def test_missing_setup_script_is_a_build_error(workdir):
    with pytest.raises(builder.ImageBuildError, match="setup script not found"):
        build_image(workdir / "x.iso", setup_script=workdir / "nope.sh")
