"""Fixtures for the tests that boot real guests (marker ``vm``): libvirt on qemu:///system,
dev images built once per session into a folder libvirt-qemu can traverse, and a domain
tracker that destroys every domain a test started."""

from __future__ import annotations

import shutil
import tempfile
import uuid as uuid_module
from pathlib import Path

import pytest

from anweddol_actors.hypervisor import DomainSpec, Hypervisor, ensure_daemons
from anweddol_actors.image.builder import build_image, make_traversable

TEST_IMAGE_ROOT = Path("/var/lib/anweddol_actors/test-images")
FORWARD_PORTS = range(20000, 30000)
BOOT_TIMEOUT = 90.0


@pytest.fixture(scope="session")
def image_dir():
    make_traversable(TEST_IMAGE_ROOT)
    folder = Path(tempfile.mkdtemp(prefix="session-", dir=TEST_IMAGE_ROOT))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def dev_image(image_dir):
    return build_image(image_dir / "dev.iso")


@pytest.fixture(scope="session")
def qemu_uri():
    ensure_daemons("qemu:///system")
    return "qemu:///system"


@pytest.fixture
def hypervisor(qemu_uri):
    hv = Hypervisor(qemu_uri)
    yield hv
    hv.close()


class DomainTracker:
    """Starts domains on free loopback forward ports; destroys them all at teardown."""

    def __init__(self, hypervisor: Hypervisor, log_dir: Path):
        self.hypervisor = hypervisor
        self.log_dir = log_dir
        self.uuids: list[str] = []

    def spec(self, iso: Path, memory_mib: int = 256, vcpus: int = 1) -> DomainSpec:
        uuid = str(uuid_module.uuid4())
        return DomainSpec(
            uuid=uuid,
            memory_mib=memory_mib,
            vcpus=vcpus,
            iso_path=iso,
            domain_type=self.hypervisor.detect_domain_type(),
            network="user",
            forward_port=FORWARD_PORTS.start,
            console_log=self.log_dir / f"{uuid}.log",
        )

    def start(self, iso: Path, **kwargs):
        spec = self.spec(iso, **kwargs)
        self.uuids.append(spec.uuid)  # tracked before creating: a half-start is cleaned too
        return self.hypervisor.create_domain_on_free_port(spec, FORWARD_PORTS)

    def destroy_all(self) -> None:
        for uuid in self.uuids:
            self.hypervisor.destroy_domain(uuid)


@pytest.fixture
def domains(hypervisor, image_dir):
    tracker = DomainTracker(hypervisor, image_dir)
    yield tracker
    tracker.destroy_all()
