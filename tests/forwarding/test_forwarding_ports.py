"""reserve_port: atomic reservation by bind+listen, range validation, exhaustion, reuse."""

from __future__ import annotations

import errno
import os
import socket
import threading

import pytest

from anweddol_actors.forwarding import PortRangeExhausted, normalize_port_range, reserve_port

HOST = "127.0.0.1"
# Below Linux's ephemeral range (32768-60999), so outgoing connections do not wander in.
TEST_RANGE = range(20000, 32000)

pytestmark = pytest.mark.timeout(60)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def free_port() -> int:
    with reserve_port(TEST_RANGE, HOST) as sock:
        return sock.getsockname()[1]


def test_reserved_socket_is_listening_in_range() -> None:
    sock = reserve_port(range(20000, 20100), HOST)
    with sock:
        port = sock.getsockname()[1]
        assert port in range(20000, 20100)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        with socket.create_connection((HOST, port), timeout=5):
            conn, _ = sock.accept()
            conn.close()


def test_pair_means_first_and_last_included() -> None:
    port = free_port()
    with reserve_port((port, port), HOST) as sock:
        assert sock.getsockname()[1] == port


@pytest.mark.parametrize(
    "bad",
    [range(0, 10), range(65530, 65537), range(5000, 5000), (100, 50), (65530, 65536), [], [1, 3]],
)
def test_invalid_ranges_rejected(bad: object) -> None:
    before = fd_count()
    with pytest.raises(ValueError):
        reserve_port(bad, HOST)  # type: ignore[arg-type]
    assert fd_count() == before


def test_normalize_accepts_contiguous_lists() -> None:
    assert normalize_port_range([10002, 10000, 10001]) == range(10000, 10003)
    assert normalize_port_range((10000, 15000)) == range(10000, 15001)
    with pytest.raises(TypeError):
        normalize_port_range(("10000", "15000"))  # type: ignore[arg-type]


def test_exhaustion_raises_and_leaks_nothing() -> None:
    base = free_port()
    # Three consecutive free ports: retry from another base if one of them is busy.
    for _ in range(50):
        span = range(base, base + 3)
        try:
            held = [reserve_port(range(p, p + 1), HOST) for p in span]
            break
        except PortRangeExhausted:
            base = free_port()
    else:
        pytest.fail("could not find three consecutive free ports")
    try:
        before = fd_count()
        with pytest.raises(PortRangeExhausted) as info:
            reserve_port(span, HOST)
        assert fd_count() == before
        message = str(info.value)
        assert f"{base}-{base + 2}" in message and "3 ports" in message
        assert info.value.port_range == span
    finally:
        for sock in held:
            sock.close()
    # Released: the range is usable again.
    reserve_port(span, HOST).close()


def test_listener_with_reuseaddr_still_blocks_the_port() -> None:
    """SO_REUSEADDR on both sides must not let two listeners share a port (Linux)."""
    port = free_port()
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    other.bind((HOST, port))
    other.listen()
    with other:
        with pytest.raises(PortRangeExhausted):
            reserve_port(range(port, port + 1), HOST)
        # A wildcard reservation overlaps 127.0.0.1 and must be refused as well.
        with pytest.raises(PortRangeExhausted):
            reserve_port(range(port, port + 1), "")


def test_bound_but_not_listening_socket_does_not_fool_us() -> None:
    """Two REUSEADDR sockets may both bind; the second listen() fails: must count as taken."""
    port = free_port()
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    other.bind((HOST, port))
    with other:
        mine = reserve_port(range(port, port + 1), HOST)  # we listen first: ours
        with mine:
            with pytest.raises(OSError) as info:
                other.listen()
            assert info.value.errno == errno.EADDRINUSE


def test_port_in_time_wait_can_be_reserved_again() -> None:
    port = free_port()
    listener = reserve_port(range(port, port + 1), HOST)
    client = socket.create_connection((HOST, port), timeout=5)
    conn, _ = listener.accept()
    conn.close()  # server side closes first: its side goes to TIME_WAIT on `port`
    assert client.recv(1) == b""
    client.close()
    listener.close()
    # Without SO_REUSEADDR the port is still held (otherwise this test proves nothing)...
    plain = socket.socket()
    with plain, pytest.raises(OSError) as info:
        plain.bind((HOST, port))
    assert info.value.errno == errno.EADDRINUSE
    # ...but a reservation succeeds.
    with reserve_port(range(port, port + 1), HOST) as again:
        assert again.getsockname()[1] == port


def test_parallel_reservations_never_share_a_port() -> None:
    threads_count, per_thread = 8, 25
    base = free_port()
    span = range(min(base, 32000 - 400), min(base, 32000 - 400) + 400)
    barrier = threading.Barrier(threads_count)
    results: list[list[socket.socket]] = [[] for _ in range(threads_count)]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait()
            for _ in range(per_thread):
                results[index].append(reserve_port(span, HOST))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    socks = [s for r in results for s in r]
    try:
        assert not errors, errors
        ports = [s.getsockname()[1] for s in socks]
        assert len(ports) == threads_count * per_thread
        assert len(set(ports)) == len(ports)
        assert all(p in span for p in ports)
    finally:
        for s in socks:
            s.close()


def test_parallel_reservations_fill_a_small_range_exactly() -> None:
    """More reservers than ports: each port handed out once, the rest told it is exhausted."""
    base = free_port()
    span = range(base, base + 1)
    for port in range(base + 1, base + 6):  # widen to up to 6 ports that are free now
        try:
            reserve_port(range(port, port + 1), HOST).close()
        except PortRangeExhausted:
            break
        span = range(base, port + 1)
    barrier = threading.Barrier(16)
    got: list[socket.socket] = []
    exhausted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        try:
            sock = reserve_port(span, HOST)
        except PortRangeExhausted:
            with lock:
                exhausted.append(1)
            return
        with lock:
            got.append(sock)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        ports = sorted(s.getsockname()[1] for s in got)
        assert ports == list(span)
        assert len(exhausted) == 16 - len(span)
    finally:
        for s in got:
            s.close()


def test_foreign_bind_address_is_an_error_not_exhaustion() -> None:
    with pytest.raises(OSError) as info:
        reserve_port(range(20000, 20010), "192.0.2.1")  # TEST-NET-1: never ours
    assert not isinstance(info.value, PortRangeExhausted)
    assert info.value.errno == errno.EADDRNOTAVAIL
