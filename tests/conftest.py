"""Shared test setup.

Hypothesis profiles: "dev" by default, "ci" when CI=true (or HYPOTHESIS_PROFILE=ci).

Leak checks (autouse fixture ``leak_checks``), run after a test and all its function-scoped
fixtures have been torn down:

- pykka actors: the registry must empty within LEAK_TIMEOUT seconds (polled every 20 ms);
  leftovers are stopped so later tests start clean, and the test errors at teardown with
  "test left N live actors: ClassA, ClassB".
- tests marked ``vm``: domains carrying the project's marker on VM_URI (qemu:///system) that
  were not there before the test and are still there after LEAK_TIMEOUT are destroyed and
  named in the failure. Domains that existed before
  the test are left alone (another run or a real server may own them); a domain another
  process creates *during* a vm test would be blamed on it, so vm runs should not overlap.

VM tests of concurrent runs never overlap: each ``vm`` test holds an exclusive lock on
VM_LOCK_PATH for its whole duration (fixtures included), so one run's leak check never
blames (and destroys) another run's domains, and a test that restarts libvirtd never pulls
it from under another run's guests. A single run (CI) never waits on it.

Environment, for the tests of these checks (tests/test_layering.py): ANWEDDOL_LEAK_TIMEOUT
(seconds, default 10) and ANWEDDOL_VM_LEAK_URI (default qemu:///system).
"""

from __future__ import annotations

import fcntl
import os
import time

import pykka
import pytest
from hypothesis import HealthCheck, settings

# No deadline in either profile: a loaded machine (other tests, VMs booting) must not turn
# a slow example into a failure; the suites' total time is what we watch.
settings.register_profile("dev", max_examples=50, stateful_step_count=30, deadline=None)
settings.register_profile(
    "ci",
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)

_default = "ci" if os.environ.get("CI", "").lower() == "true" else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))

# The PostgreSQL server of the store tests (started only when a test asks for it).
pytest_plugins = ("tests.pgserver",)

LEAK_TIMEOUT = float(os.environ.get("ANWEDDOL_LEAK_TIMEOUT", "10"))
POLL_INTERVAL = 0.02
STOP_TIMEOUT = 10.0
VM_URI = os.environ.get("ANWEDDOL_VM_LEAK_URI", "qemu:///system")
VM_LOCK_PATH = "/tmp/anweddol-actors-vm-tests.lock"


def _wait_until_empty(read, timeout: float):
    """Poll ``read()`` every POLL_INTERVAL until it is empty or ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(POLL_INTERVAL)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _check_actors() -> str | None:
    leftovers = _wait_until_empty(pykka.ActorRegistry.get_all, LEAK_TIMEOUT)
    if not leftovers:
        return None
    names = sorted(ref.actor_class.__name__ for ref in leftovers)
    message = f"test left {_plural(len(names), 'live actor')}: {', '.join(names)}"
    try:
        pykka.ActorRegistry.stop_all(timeout=STOP_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - reported with the leak, not instead of it
        message += f" (stop_all failed: {exc!r})"
    return message


def _open_hypervisor():
    """A fresh connection to VM_URI, or None when libvirt does not answer."""
    # Imported here: only vm tests pay for libvirt, and a collection without it still works.
    from anweddol_actors.hypervisor import Hypervisor, HypervisorError

    try:
        return Hypervisor(VM_URI)
    except HypervisorError:
        return None


def _marked_domains() -> set[str] | None:
    hypervisor = _open_hypervisor()
    if hypervisor is None:
        return None
    with hypervisor:
        return set(hypervisor.list_marked())


def _check_domains(before: set[str] | None) -> str | None:
    hypervisor = _open_hypervisor()
    if hypervisor is None:
        if before is None:
            return None  # libvirt never answered: the test could not have started a domain
        return f"cannot reach {VM_URI} to look for leftover domains"
    with hypervisor:
        baseline = before or set()  # unreachable before the test: every marked domain is new

        def new_domains() -> list[str]:
            return sorted(set(hypervisor.list_marked()) - baseline)

        leftovers = _wait_until_empty(new_domains, LEAK_TIMEOUT)
        if not leftovers:
            return None
        described = []
        for uuid in leftovers:
            try:
                described.append(f"{hypervisor.domain_info(uuid).name} ({uuid})")
            except Exception:  # noqa: BLE001 - gone meanwhile: name it by its UUID
                described.append(uuid)
            hypervisor.destroy_domain(uuid)
    return f"test left {_plural(len(leftovers), 'marked domain')} (destroyed): " + ", ".join(
        described
    )


@pytest.fixture(autouse=True)
def leak_checks(request):
    """Fail a test that leaves pykka actors alive or (``vm`` tests) libvirt domains behind.

    Autouse and defined in the root conftest, so it is set up before, and torn down after,
    every other function-scoped fixture of the test: their cleanup counts.
    """
    vm = request.node.get_closest_marker("vm") is not None
    lock = None
    if vm:
        lock = open(VM_LOCK_PATH, "a")  # noqa: SIM115 - held across the yield
        fcntl.flock(lock, fcntl.LOCK_EX)  # bounded by pytest-timeout like the test itself
    try:
        domains_before = _marked_domains() if vm else None
        yield
        # Actors first: a container actor still stopping may be destroying its domain.
        problems = [_check_actors()]
        if vm:
            problems.append(_check_domains(domains_before))
    finally:
        if lock is not None:
            lock.close()  # releases the lock
    problems = [problem for problem in problems if problem]
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


# Fixtures several test modules share. Their imports are inside them: only the tests that
# use one pay for its module.


@pytest.fixture(scope="module")
def rsa():
    """A 2048-bit runtime key for in-process servers (4096 bits per module is slow)."""
    from anweddol_actors.core.crypto import RSAWrapper

    return RSAWrapper(key_size=2048)


@pytest.fixture
def relay():
    """A libvirt endpoint that answers only while started (tests/libvirtd.py): libvirt
    going away and coming back, for real."""
    from tests.libvirtd import SocketRelay

    with SocketRelay() as relay:
        yield relay


@pytest.fixture
def guest():
    """A loopback SSH server standing in for a guest (tests/guest/loopback_ssh.py)."""
    from tests.guest.loopback_ssh import LoopbackSSH

    with LoopbackSSH() as ssh:
        yield ssh
