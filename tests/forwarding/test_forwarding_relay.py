"""Relay over real 127.0.0.1 sockets, against small target servers running in threads."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from anweddol_actors.forwarding import Relay, directions, reserve_port
from anweddol_actors.forwarding import relay as relay_module

HOST = "127.0.0.1"
TEST_RANGE = range(20000, 32000)
MODES = [None, False, True]  # adaptive (default), copy, splice
MODE_IDS = ["adaptive", "copy", "splice"]

pytestmark = pytest.mark.timeout(120)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- target servers ----------------------------------------------------------------------


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def digest_reply(conn: socket.socket) -> None:
    """Read to EOF, then answer the SHA-256 of everything read and close (half-close peer)."""
    h = hashlib.sha256()
    while data := conn.recv(65536):
        h.update(data)
    conn.sendall(h.digest())
    conn.shutdown(socket.SHUT_WR)


class Target:
    """A threaded TCP server on 127.0.0.1 running `handler` for each connection."""

    def __init__(self, handler: Callable[[socket.socket], None], port: int = 0) -> None:
        self.handler = handler
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, port))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass

    def stop_listening(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        self._acceptor.join(5)

    def close(self) -> None:
        if self.listener.fileno() != -1:
            self.stop_listening()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)
        for conn in self._conns:
            conn.close()


@pytest.fixture
def echo_target() -> Iterator[Target]:
    target = Target(echo)
    yield target
    target.close()


def start_relay(target_port: int, **kwargs: object) -> Relay:
    relay = Relay(reserve_port(TEST_RANGE, HOST), (HOST, target_port), **kwargs)  # type: ignore[arg-type]
    relay.start()
    return relay


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def echo_roundtrip(port: int, payload: bytes, timeout: float = 30.0) -> bytes:
    """Send `payload` while reading the echo concurrently; return what came back."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:

        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        chunks = []
        while data := sock.recv(1 << 20):
            chunks.append(data)
        sender.join()
    return b"".join(chunks)


def closed_by_peer(sock: socket.socket) -> bool:
    """True if the peer closed or reset the connection (EOF or ECONNRESET)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def connection_is_dropped(port: int) -> bool:
    """Connect and expect the relay to drop us. The relay may reset the connection before
    connect() even returns (the kernel completed the handshake, the relay already gave up),
    which Python reports as ECONNRESET from connect()."""
    try:
        sock = socket.create_connection((HOST, port), timeout=10)
    except ConnectionResetError:
        return True
    with sock:
        return closed_by_peer(sock)


# -- tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("splice", MODES, ids=MODE_IDS)
def test_many_simultaneous_connections_keep_integrity(echo_target: Target, splice) -> None:
    relay = start_relay(echo_target.port, splice=splice)
    count, size = 50, 300_000
    payloads = [os.urandom(size) for _ in range(count)]
    results: list[bytes | BaseException | None] = [None] * count
    barrier = threading.Barrier(count)

    def client(i: int) -> None:
        try:
            barrier.wait()
            results[i] = echo_roundtrip(relay.port, payloads[i])
        except BaseException as exc:
            results[i] = exc

    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(count):
            assert isinstance(results[i], bytes), results[i]
            got = hashlib.sha256(results[i]).hexdigest()  # type: ignore[arg-type]
            assert got == hashlib.sha256(payloads[i]).hexdigest(), f"connection {i} corrupted"
        assert echo_target.accepted == count
        assert wait_for(lambda: relay.connection_count == 0)
        assert relay.bytes_in == relay.bytes_out == count * size
        assert relay.stats.accepted == count
    finally:
        relay.stop()


@pytest.mark.parametrize("splice", MODES, ids=MODE_IDS)
def test_large_transfer_integrity(echo_target: Target, splice) -> None:
    relay = start_relay(echo_target.port, splice=splice)
    try:
        payload = os.urandom(64 * 1024 * 1024)
        got = echo_roundtrip(relay.port, payload, timeout=60)
        assert len(got) == len(payload)
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    finally:
        relay.stop()


def test_adaptive_mode_switches_bulk_directions_to_splice(echo_target: Target) -> None:
    relay = start_relay(echo_target.port)
    assert relay.mode == "adaptive"
    try:
        with socket.create_connection((HOST, relay.port), timeout=10) as sock:
            sock.sendall(b"ping")
            assert sock.recv(4) == b"ping"
            assert wait_for(lambda: relay.connection_count == 1)
            (pair,) = relay._pairs
            assert type(pair.c2t) is directions.CopyDirection  # small: no pipes yet
            payload = os.urandom(relay_module.SPLICE_AFTER + 1_000_000)
            sender = threading.Thread(target=sock.sendall, args=(payload,))
            sender.start()
            received = 0
            while received < len(payload):
                received += len(sock.recv(1 << 20))
            sender.join()
            assert type(pair.c2t) is directions.SpliceDirection
            assert type(pair.t2c) is directions.SpliceDirection
            sock.sendall(b"after")  # still relays correctly after the switch
            assert sock.recv(5) == b"after"
    finally:
        relay.stop()


@pytest.mark.parametrize("splice", MODES, ids=MODE_IDS)
def test_half_close_client_still_receives_reply(splice) -> None:
    target = Target(digest_reply)
    relay = start_relay(target.port, splice=splice)
    try:
        payload = os.urandom(5_000_000)
        with socket.create_connection((HOST, relay.port), timeout=10) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)  # our EOF must reach the target...
            reply = b""
            while data := sock.recv(100):  # ...whose answer must still reach us, then EOF
                reply += data
        assert reply == hashlib.sha256(payload).digest()
        assert wait_for(lambda: relay.connection_count == 0)
    finally:
        relay.stop()
        target.close()


def test_target_half_close_reaches_client(echo_target: Target) -> None:
    """The target shuts its write side first; the client still sends and gets its echo."""

    def greet_then_shut_write(conn: socket.socket) -> None:
        conn.sendall(b"hello")
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(100):
            data += chunk
        assert data == b"late data"

    target = Target(greet_then_shut_write)
    relay = start_relay(target.port)
    try:
        with socket.create_connection((HOST, relay.port), timeout=10) as sock:
            got = b""
            while chunk := sock.recv(100):
                got += chunk
            assert got == b"hello"  # EOF from the target arrived as EOF
            sock.sendall(b"late data")  # our direction is still open
            sock.shutdown(socket.SHUT_WR)
        assert wait_for(lambda: relay.connection_count == 0)
    finally:
        relay.stop()
        target.close()


def test_refused_target_closes_that_client_only() -> None:
    target = Target(echo)
    relay = start_relay(target.port)
    try:
        alive = socket.create_connection((HOST, relay.port), timeout=10)
        alive.sendall(b"one")
        assert alive.recv(3) == b"one"
        target.stop_listening()  # existing connection keeps working, new ones are refused

        assert connection_is_dropped(relay.port)
        assert relay.stats.connect_failures == 1

        alive.sendall(b"two")
        assert alive.recv(3) == b"two"
        assert relay.is_running

        # Target back on the same port: the relay serves new clients again.
        back = Target(echo, port=target.port)
        try:
            assert echo_roundtrip(relay.port, b"three") == b"three"
        finally:
            back.close()
        alive.close()
    finally:
        relay.stop()
        target.close()


@contextlib.contextmanager
def blackhole_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: it drops SYNs, so a connect to it
    neither completes nor is refused."""
    blackhole = socket.socket()
    blackhole.bind((HOST, 0))
    blackhole.listen(0)
    port = blackhole.getsockname()[1]
    fillers = []
    try:
        # Fill the accept queue (never accepted) until a connect no longer completes.
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((HOST, port))
            fillers.append(s)
        time.sleep(0.2)
        yield port
    finally:
        for s in fillers:
            s.close()
        blackhole.close()


def test_unresponsive_target_times_out_connect() -> None:
    """A target whose accept queue is full drops SYNs: the connect deadline must fire."""
    with blackhole_port() as port:
        relay = start_relay(port, connect_timeout=0.5)
        try:
            start = time.monotonic()
            assert connection_is_dropped(relay.port)
            elapsed = time.monotonic() - start
            assert 0.3 < elapsed < 5, elapsed
            assert relay.stats.connect_failures == 1
            assert relay.connection_count == 0
        finally:
            relay.stop()


def test_client_reset_closes_its_pair(echo_target: Target) -> None:
    relay = start_relay(echo_target.port)
    try:
        sock = socket.create_connection((HOST, relay.port), timeout=10)
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        assert relay.connection_count == 1
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, relay_module._LINGER_ABORT)
        sock.close()
        assert wait_for(lambda: relay.connection_count == 0)
        assert echo_roundtrip(relay.port, b"still here") == b"still here"
    finally:
        relay.stop()


@pytest.mark.parametrize("splice", [False, True], ids=["copy", "splice"])
def test_backpressure_bounds_buffering(splice) -> None:
    """A target that does not read must stop the client, not grow the relay's memory."""
    go = threading.Event()

    def slow_digest(conn: socket.socket) -> None:
        go.wait(30)
        digest_reply(conn)

    target = Target(slow_digest)
    relay = start_relay(target.port, splice=splice)
    cap = 512 * 1024 * 1024
    try:
        with socket.create_connection((HOST, relay.port), timeout=10) as sock:
            sock.setblocking(False)
            block = os.urandom(1 << 20)
            h = hashlib.sha256()
            sent = 0
            stalled_since = None
            while sent < cap:
                try:
                    n = sock.send(block)
                except BlockingIOError:
                    stalled_since = stalled_since or time.monotonic()
                    if time.monotonic() - stalled_since > 1.0:
                        break  # blocked for a full second: backpressure reached us
                    time.sleep(0.01)
                    continue
                stalled_since = None
                h.update(block[:n])
                sent += n
            assert sent < cap, "client never blocked: the relay buffers without bound"
            (pair,) = relay._pairs
            if splice:
                assert pair.c2t.pending <= directions.PIPE_SIZE
            else:
                assert pair.c2t.pending is None or len(pair.c2t.pending) <= directions.CHUNK_SIZE
            # Unblock the target: everything sent must arrive intact.
            go.set()
            sock.setblocking(True)
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while data := sock.recv(100):
                reply += data
            assert reply == h.digest()
    finally:
        go.set()
        relay.stop()
        target.close()


def test_stop_closes_connections_frees_port_and_leaks_nothing() -> None:
    threads_before = set(threading.enumerate())
    fds_before = fd_count()
    echo_target = Target(echo)
    relay = start_relay(echo_target.port)
    port = relay.port
    clients = []
    for _ in range(5):
        sock = socket.create_connection((HOST, port), timeout=10)
        sock.sendall(b"hi")
        assert sock.recv(2) == b"hi"
        clients.append(sock)
    assert relay.connection_count == 5
    assert relay.is_running

    relay.stop()
    assert not relay.is_running
    assert relay.connection_count == 0
    for sock in clients:
        assert closed_by_peer(sock)
        sock.close()
    assert relay.error is None
    assert not any(t.name == relay.name for t in threading.enumerate())
    echo_target.close()  # its handlers saw the relay's resets; this joins them
    assert set(threading.enumerate()) == threads_before
    assert fd_count() == fds_before
    # The port is free, even for a plain bind without SO_REUSEADDR (no TIME_WAIT left).
    plain = socket.socket()
    with plain:
        plain.bind((HOST, port))
        plain.listen()
    with socket.socket() as refused:
        assert refused.connect_ex((HOST, port)) == errno.ECONNREFUSED


def test_stop_is_idempotent_and_thread_safe(echo_target: Target) -> None:
    relay = start_relay(echo_target.port)
    stoppers = [threading.Thread(target=relay.stop) for _ in range(4)]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join(10)
    relay.stop()
    assert not relay.is_running
    with pytest.raises(RuntimeError):
        relay.start()


def test_stop_without_start_releases_the_port(echo_target: Target) -> None:
    fds_before = fd_count()
    relay = Relay(reserve_port(TEST_RANGE, HOST), (HOST, echo_target.port))
    relay.stop()
    relay.stop()
    assert fd_count() == fds_before
    with socket.socket() as plain:
        plain.bind((HOST, relay.port))


def test_idle_relay_does_not_spin(echo_target: Target) -> None:
    """No busy loop: an idle relay with an idle connection uses (almost) no CPU."""
    relay = start_relay(echo_target.port)
    try:
        with socket.create_connection((HOST, relay.port), timeout=10) as sock:
            sock.sendall(b"x")
            assert sock.recv(1) == b"x"
            native_id = relay._thread.native_id  # type: ignore[union-attr]
            stat = f"/proc/self/task/{native_id}/stat"

            def cpu_ticks() -> int:
                fields = open(stat).read().rsplit(")", 1)[1].split()
                return int(fields[11]) + int(fields[12])  # utime + stime

            before = cpu_ticks()
            time.sleep(1.0)
            assert cpu_ticks() - before <= 2  # clock ticks (1/100 s): idle, not spinning
    finally:
        relay.stop()


def test_context_manager_and_repr(echo_target: Target) -> None:
    with Relay(reserve_port(TEST_RANGE, HOST), (HOST, echo_target.port), name="t") as relay:
        assert relay.is_running
        assert f":{relay.port} -> {HOST}:{echo_target.port}" in repr(relay)
        assert echo_roundtrip(relay.port, b"ctx") == b"ctx"
    assert not relay.is_running


# -- idle tracking (the server destroys a container idle for max_idle_time) ---------------


def opened(port: int) -> socket.socket:
    """A client connection the relay has surely accepted (an echo made it through)."""
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.sendall(b"!")
    assert sock.recv(1) == b"!"
    return sock


def test_idle_since_follows_open_connections(echo_target: Target) -> None:
    relay = Relay(reserve_port(TEST_RANGE, HOST), (HOST, echo_target.port))
    assert relay.idle_since is not None  # never started: no connection either
    before = time.monotonic()
    relay.start()
    try:
        started = relay.idle_since
        assert started is not None
        assert before <= started <= time.monotonic()
        assert relay.connection_count == 0

        first = opened(relay.port)
        assert relay.idle_since is None
        assert relay.connection_count == 1
        second = opened(relay.port)
        assert relay.connection_count == 2

        first.close()
        assert wait_for(lambda: relay.connection_count == 1)
        assert relay.idle_since is None  # one connection is still open

        closing = time.monotonic()
        second.close()
        assert wait_for(lambda: relay.idle_since is not None)
        assert relay.connection_count == 0
        idle = relay.idle_since
        assert idle is not None
        assert started < closing <= idle <= time.monotonic()

        # Idle again and again: each new period starts at its own last close.
        third = opened(relay.port)
        assert relay.idle_since is None
        third.close()
        assert wait_for(lambda: relay.idle_since is not None)
        assert relay.idle_since > idle  # type: ignore[operator]
    finally:
        relay.stop()


def test_connection_waiting_for_the_target_counts_as_open() -> None:
    """A client whose target connect is pending is connected: not idle until it is dropped."""
    with blackhole_port() as port:
        relay = start_relay(port, connect_timeout=1.0)
        try:
            with socket.create_connection((HOST, relay.port), timeout=10) as sock:
                assert wait_for(lambda: relay.connection_count == 1)
                assert relay.idle_since is None
                assert closed_by_peer(sock)  # the connect deadline fired
            assert wait_for(lambda: relay.idle_since is not None)
            assert relay.connection_count == 0
        finally:
            relay.stop()


def test_refused_target_leaves_the_relay_idle() -> None:
    target = Target(echo)
    target.stop_listening()
    relay = start_relay(target.port)
    try:
        started = relay.idle_since
        assert connection_is_dropped(relay.port)
        assert wait_for(lambda: relay.stats.connect_failures == 1)
        assert relay.connection_count == 0
        assert relay.idle_since is not None
        assert relay.idle_since >= started  # type: ignore[operator]
    finally:
        relay.stop()
        target.close()


def test_stop_with_open_connections_sets_idle_since(echo_target: Target) -> None:
    relay = start_relay(echo_target.port)
    sock = opened(relay.port)
    try:
        assert relay.idle_since is None
        relay.stop()
        assert relay.connection_count == 0
        assert relay.idle_since is not None
    finally:
        sock.close()
        relay.stop()


def test_idle_since_read_from_another_thread_is_consistent(echo_target: Target) -> None:
    """A lock-free reader only ever sees None or a float, and idle periods never go back."""
    relay = start_relay(echo_target.port)
    seen: list[float | None] = [relay.idle_since]
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            value = relay.idle_since
            if value != seen[-1]:  # changes only: the loop spins millions of times
                seen.append(value)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(100):
            opened(relay.port).close()
        assert wait_for(lambda: relay.idle_since is not None)
    finally:
        done.set()
        thread.join(10)
        relay.stop()
    assert all(value is None or isinstance(value, float) for value in seen)
    periods = [value for value in seen if value is not None]
    assert periods == sorted(periods)
    assert None in seen and len(set(periods)) > 1
