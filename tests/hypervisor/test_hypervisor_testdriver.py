"""Hypervisor on libvirt's in-process test driver: no daemon, no guest, milliseconds."""

from __future__ import annotations

import ipaddress
import threading
import time
import uuid as uuid_module

import libvirt
import pytest

from anweddol_actors.hypervisor import (
    DomainCreateError,
    DomainNotFound,
    DomainSpec,
    Hypervisor,
    HypervisorUnavailable,
    events,
)

URI = "test:///default"


@pytest.fixture
def hv():
    hypervisor = Hypervisor(URI)
    yield hypervisor
    hypervisor.close()


def _spec(**overrides) -> DomainSpec:
    values = dict(
        uuid=str(uuid_module.uuid4()),
        memory_mib=256,
        vcpus=2,
        iso_path="/srv/c.iso",
        domain_type="test",
        network="user",
        forward_port=20022,
    )
    values.update(overrides)
    return DomainSpec(**values)


def test_detects_the_test_domain_type(hv):
    assert hv.detect_domain_type() == "test"


def test_create_list_info_destroy(hv):
    spec = _spec()
    handle = hv.create_domain(spec)
    assert (handle.uuid, handle.name) == (spec.uuid, f"anweddol-{spec.uuid}")
    assert hv.is_active(spec.uuid)
    assert spec.uuid in hv.list_marked()
    info = hv.domain_info(spec.uuid)
    assert (info.memory_mib, info.vcpus, info.state) == (256, 2, "running")
    assert hv.destroy_domain(spec.uuid) is True
    assert not hv.is_active(spec.uuid)
    assert spec.uuid not in hv.list_marked()
    assert hv.destroy_domain(spec.uuid) is False
    with pytest.raises(DomainNotFound):
        hv.domain_info(spec.uuid)


def test_list_marked_ignores_unmarked_domains(hv):
    other = str(uuid_module.uuid4())
    # Named like ours but without our metadata: somebody else's domain.
    xml = (
        f"<domain type='test'><name>anweddol-{other}</name><uuid>{other}</uuid>"
        "<memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>"
    )
    conn = libvirt.open(URI)
    try:
        conn.createXML(xml, 0)
        mine = _spec()
        hv.create_domain(mine)
        marked = hv.list_marked()
        assert mine.uuid in marked and other not in marked
        # The default test domain ("test") is not ours either.
        assert len(marked) == 1
    finally:
        conn.close()


def test_duplicate_uuid_is_a_create_error_not_a_port_error(hv):
    spec = _spec()
    hv.create_domain(spec)
    with pytest.raises(DomainCreateError) as info:
        hv.create_domain(spec)
    assert info.value.reason == "other"
    assert info.value.uuid == spec.uuid


def test_watch_stops_reports_our_domains_only(hv):
    seen: list[str] = []
    ours_stopped = threading.Event()
    mine = _spec()

    def on_stop(uuid: str) -> None:
        seen.append(uuid)
        if uuid == mine.uuid:
            ours_stopped.set()

    hv.watch_stops(on_stop)
    conn = libvirt.open(URI)
    try:
        # The test driver's built-in domain "test" is not marked: no callback for it.
        conn.lookupByName("test").destroy()
        hv.create_domain(mine)
        hv.destroy_domain(mine.uuid)
        assert ours_stopped.wait(5)
    finally:
        conn.close()
    assert seen == [mine.uuid]


def test_a_failing_callback_does_not_stop_the_watch(hv):
    calls: list[str] = []
    done = threading.Event()

    def flaky(uuid: str) -> None:
        calls.append(uuid)
        if len(calls) == 1:
            raise RuntimeError("handler bug")
        done.set()

    hv.watch_stops(flaky)
    for _ in range(2):
        spec = _spec()
        hv.create_domain(spec)
        hv.destroy_domain(spec.uuid)
    assert done.wait(5)
    assert len(calls) == 2


def test_close_ends_the_event_thread_and_is_idempotent():
    hv = Hypervisor(URI)
    hv.watch_stops(lambda uuid: None)
    assert events.loop_running()
    hv.close()
    hv.close()
    assert hv.closed
    assert not events.loop_running()
    assert not any(t.name == "libvirt-events" and t.is_alive() for t in threading.enumerate())


def test_event_thread_lives_while_any_hypervisor_is_open():
    first, second = Hypervisor(URI), Hypervisor(URI)
    first.close()
    assert events.loop_running()
    second.close()
    assert not events.loop_running()


def test_guest_address_user_mode_is_the_loopback_forward(hv):
    spec = _spec(forward_port=24567)
    hv.create_domain(spec)
    assert hv.guest_address(spec) == ("127.0.0.1", 24567)


def test_guest_address_nat_comes_from_the_dhcp_leases(hv):
    spec = _spec(network="nat", forward_port=None)
    hv.create_domain(spec)
    # The test driver reports a made-up lease; the guest's SSH port is 22 in nat mode.
    host, port = hv.guest_address(spec, deadline=time.monotonic() + 1)
    assert port == 22
    assert ipaddress.ip_address(host).version == 4


def test_guest_address_of_a_vanished_nat_domain_is_not_found(hv):
    spec = _spec(network="nat", forward_port=None)
    with pytest.raises(DomainNotFound):
        hv.guest_address(spec, deadline=time.monotonic() + 0.3)


def test_unreachable_uri_is_a_clear_error():
    with pytest.raises(HypervisorUnavailable, match="cannot connect"):
        Hypervisor("test:///nonexistent/file.xml")
    assert not events.loop_running()
