"""The libvirt connection outlives its loss: detected at once, every call answered with
HypervisorUnavailable meanwhile, reopened with backoff, watches registered again.

libvirt is reached through a relay socket (tests/libvirtd.py): stopping the relay cuts the
connection exactly as a libvirtd that exits does (EOF on the socket), and a stopped relay
is a real endpoint nobody listens on. libvirtd itself is never touched.
"""

from __future__ import annotations

import os
import threading

import pytest
from libvirtd import RECONNECT_BOUND
from serverharness import wait_for

from anweddol_actors.hypervisor import Hypervisor, HypervisorError, HypervisorUnavailable


def reconnector_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "libvirt-reconnect"]


def test_unreachable_uri_raises_at_once():
    with pytest.raises(HypervisorUnavailable, match="nothing.sock"):
        Hypervisor("qemu:///system?socket=/tmp/nothing.sock")
    assert reconnector_threads() == []


def test_waits_for_libvirt_then_connects(relay):
    hypervisor = Hypervisor(relay.uri, wait_for_connection=True)
    try:
        assert not hypervisor.connected
        heard = []
        hypervisor.on_connect(lambda: heard.append(hypervisor.connections))
        with pytest.raises(HypervisorUnavailable, match="unreachable"):
            hypervisor.check()
        with pytest.raises(HypervisorUnavailable):
            hypervisor.list_marked()
        with pytest.raises(HypervisorUnavailable):
            hypervisor.is_active("6f1c7b7e-3a0a-4d0e-9a59-6c4a3d3b2a10")
        assert heard == []
        relay.start()
        wait_for(lambda: heard == [1], RECONNECT_BOUND, "first connection")
        assert hypervisor.connected
        assert isinstance(hypervisor.list_marked(), list)
    finally:
        hypervisor.close()
    assert reconnector_threads() == []


def test_loss_is_noticed_and_the_connection_comes_back(relay):
    relay.start()
    hypervisor = Hypervisor(relay.uri)
    try:
        heard = []
        hypervisor.on_connect(lambda: heard.append(hypervisor.connections))
        hypervisor.watch_stops(lambda uuid: None)
        assert heard == [1]
        assert len(hypervisor._watch_ids) == 1

        relay.stop()  # every connection through it ends, as when libvirtd exits
        wait_for(lambda: not hypervisor.connected, 10, "loss noticed")
        with pytest.raises(HypervisorUnavailable):
            hypervisor.list_marked()
        with pytest.raises(HypervisorUnavailable):
            hypervisor.destroy_domain("6f1c7b7e-3a0a-4d0e-9a59-6c4a3d3b2a10")

        relay.start()
        wait_for(lambda: heard == [1, 2], RECONNECT_BOUND, "reconnection")
        assert hypervisor.connections == 2
        # The watch is registered again on the new connection (the e2e test sees its
        # events arrive after a real libvirtd restart).
        assert len(hypervisor._watch_ids) == 1
        assert isinstance(hypervisor.list_marked(), list)
    finally:
        hypervisor.close()
    assert reconnector_threads() == []


def test_a_failed_call_on_a_dead_connection_starts_the_reconnection(relay):
    """Without waiting for the close callback: the call itself finds the connection dead."""
    relay.start()
    hypervisor = Hypervisor(relay.uri)
    try:
        conn = hypervisor._conn
        # The close callback is what normally notices; take it away to test the other path.
        conn.unregisterCloseCallback()
        relay.stop()
        wait_for(lambda: conn.isAlive() == 0, 10, "connection dead")
        with pytest.raises(HypervisorUnavailable, match="connection lost"):
            hypervisor.list_marked()
        assert not hypervisor.connected
        relay.start()
        wait_for(lambda: hypervisor.connected, RECONNECT_BOUND, "reconnection")
    finally:
        hypervisor.close()


def test_close_while_reconnecting_is_prompt_and_final(relay):
    hypervisor = Hypervisor(relay.uri, wait_for_connection=True)
    assert len(reconnector_threads()) == 1
    hypervisor.close()
    assert reconnector_threads() == []
    relay.start()  # nobody comes back once closed
    with pytest.raises(HypervisorError, match="closed"):
        hypervisor.list_marked()


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_outages_leak_no_descriptor(relay):
    """A lost connection is freed: its watches are deregistered before it is closed (each
    holds a reference on it; one eventfd leaked per outage when they were not)."""
    relay.start()
    hypervisor = Hypervisor(relay.uri)
    try:
        hypervisor.watch_stops(lambda uuid: None)
        counts = []
        for outage in range(1, 4):
            relay.stop()
            wait_for(lambda: not hypervisor.connected, 10, "loss noticed")
            relay.start()
            wait_for(
                lambda n=outage: hypervisor.connected and hypervisor.connections == n + 1,
                RECONNECT_BOUND,
                "reconnection",
            )
            counts.append(open_descriptors())
        assert counts == [counts[0]] * 3, counts
    finally:
        hypervisor.close()
