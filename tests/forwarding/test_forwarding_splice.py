"""The spliced path under load, over real 127.0.0.1 sockets: several pipefuls per wake-up
stay byte-exact and bounded, half-close still reaches the target, a reset in the middle of
a splice frees every pipe and socket, and a bulk transfer does not starve a small one."""

from __future__ import annotations

import hashlib
import os
import socket
import threading

import pytest

from anweddol_actors.forwarding import directions
from anweddol_actors.forwarding import relay as relay_module
from tests.forwarding.test_forwarding_relay import (
    HOST,
    Target,
    digest_reply,
    echo,
    echo_roundtrip,
    fd_count,
    start_relay,
    wait_for,
)

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not directions.HAVE_SPLICE, reason="os.splice is Linux-only"),
]

# More than one wake-up's worth, so a transfer takes several rounds and several wake-ups.
BULK = 3 * directions.SPLICE_ROUNDS * directions.PIPE_SIZE + 12345


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A connected loopback TCP pair (client end, server end)."""
    with socket.create_server((HOST, 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=10)
        server, _ = listener.accept()
    return client, server


def test_one_pump_moves_at_most_its_rounds_and_every_byte_arrives() -> None:
    """A SpliceDirection driven by hand: each pump_in delivers at most SPLICE_ROUNDS
    pipefuls (the bound that keeps one bulk connection from holding the loop), never holds
    more than a pipe, and the stream arrives byte-exact."""
    writer, src = tcp_pair()
    dst, reader = tcp_pair()
    payload = os.urandom(BULK)
    received = bytearray()

    def read_all() -> None:
        while data := reader.recv(1 << 20):
            received.extend(data)

    sender = threading.Thread(target=lambda: (writer.sendall(payload), writer.shutdown(1)))
    receiver = threading.Thread(target=read_all)
    sender.start()
    receiver.start()
    direction = directions.SpliceDirection(src, dst)
    src.setblocking(False)
    dst.setblocking(False)
    try:
        per_call = []
        delivered = 0
        for _ in range(1_000_000):  # bounded: ends at EOF long before
            if direction.eof and not direction.pending:
                break
            if direction.wants_write:
                delivered += direction.pump_out()
            if direction.wants_read:
                moved = direction.pump_in(memoryview(b""))
                per_call.append(moved)
                delivered += moved
            assert direction.pending <= directions.PIPE_SIZE
        assert direction.eof and not direction.pending
        dst.shutdown(socket.SHUT_WR)
        sender.join(30)
        receiver.join(30)
        assert delivered == len(payload)
        assert max(per_call) <= directions.SPLICE_ROUNDS * directions.PIPE_SIZE
        assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    finally:
        direction.close()
        for sock in (writer, src, dst, reader):
            sock.close()


@pytest.mark.parametrize("splice", [None, True], ids=["adaptive", "splice"])
def test_bulk_upload_then_half_close_is_byte_exact(splice) -> None:
    """Many pipefuls one way, then our EOF: the target sees every byte and our EOF, and its
    answer still comes back; the counters say exactly what went through."""
    target = Target(digest_reply)
    relay = start_relay(target.port, splice=splice)
    try:
        payload = os.urandom(BULK)
        with socket.create_connection((HOST, relay.port), timeout=30) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while data := sock.recv(100):
                reply += data
        assert reply == hashlib.sha256(payload).digest()
        assert wait_for(lambda: relay.connection_count == 0)
        assert relay.bytes_in == len(payload)
        assert relay.bytes_out == len(reply)
    finally:
        relay.stop()
        target.close()


def pipe_count() -> int:
    """Pipes this process holds open (the relay's splice pipes are the only ones it makes)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
        except OSError:
            pass  # the listing's own descriptor, gone already
    return count


def fill_until_blocked(sock: socket.socket) -> int:
    """Send from a non-blocking socket until the kernel refuses more; return bytes sent."""
    sock.setblocking(False)
    block = os.urandom(1 << 20)
    sent = 0
    stalls = 0
    while stalls < 50:  # 50 refusals in a row, 10 ms apart: backpressure reached us
        try:
            sent += sock.send(block)
            stalls = 0
        except BlockingIOError:
            stalls += 1
            threading.Event().wait(0.01)
    return sent


def drain_until_closed(sock: socket.socket) -> None:
    """Read until EOF or a reset (a bounded number of reads, each bounded by the timeout)."""
    for _ in range(100_000):
        try:
            if not sock.recv(1 << 20):
                return
        except ConnectionResetError:
            return
    raise AssertionError("the relay never closed the connection")


@pytest.mark.parametrize("side", ["client", "target"])
def test_reset_mid_splice_frees_pipes_and_sockets(side: str) -> None:
    """A peer resets while bytes sit in a pipe: that pair closes, its four pipe fds and two
    sockets are released, and the relay keeps serving."""
    go = threading.Event()
    target_conn: list[socket.socket] = []

    def stalled_then_reset(conn: socket.socket) -> None:
        target_conn.append(conn)
        try:
            if side == "target":
                # Stream at the client, which reads nothing, until told to reset: the
                # relay's t2c pipe fills.
                conn.setblocking(False)
                block = os.urandom(1 << 20)
                while not go.is_set():
                    try:
                        conn.send(block)
                    except BlockingIOError:
                        go.wait(0.01)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, relay_module._LINGER_ABORT)
            else:
                go.wait(30)  # reads nothing: the relay's c2t pipe fills
                while conn.recv(1 << 20):
                    pass
        finally:
            conn.close()

    target = Target(stalled_then_reset)
    relay = start_relay(target.port, splice=True)
    fds_before, pipes_before = fd_count(), pipe_count()
    try:
        sock = socket.create_connection((HOST, relay.port), timeout=10)
        assert wait_for(lambda: relay.connection_count == 1)
        (pair,) = relay._pairs
        if side == "client":
            fill_until_blocked(sock)
            busy = pair.c2t
        else:
            busy = pair.t2c
        assert type(busy) is directions.SpliceDirection
        # Mid-splice: undelivered bytes sit in the pipe (on a busy host the relay may not
        # have run yet when our side stalls, hence the wait).
        assert wait_for(lambda: busy.pending > 0, timeout=30)
        assert pipe_count() == pipes_before + 4

        if side == "client":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, relay_module._LINGER_ABORT)
            sock.close()
            go.set()
        else:
            go.set()  # the target resets; our reading lets the relay reach the reset
            sock.settimeout(10)
            drain_until_closed(sock)
            sock.close()
        assert wait_for(lambda: relay.connection_count == 0, timeout=30)
        assert wait_for(lambda: pipe_count() == pipes_before)
        assert wait_for(lambda: target_conn and target_conn[0].fileno() == -1)
        assert wait_for(lambda: fd_count() == fds_before)
        assert relay.is_running and relay.error is None
    finally:
        go.set()
        relay.stop()
        target.close()
    assert pipe_count() == pipes_before


def test_bulk_transfer_does_not_starve_a_small_one() -> None:
    """While one connection streams pipeful after pipeful, small exchanges on another keep
    getting through (each wake-up of the bulk one is bounded), and both stay byte-exact."""
    target = Target(echo)
    relay = start_relay(target.port, splice=True)
    try:
        payload = os.urandom(4 * BULK)
        result: list[bytes] = []
        bulk = threading.Thread(target=lambda: result.append(echo_roundtrip(relay.port, payload)))
        bulk.start()
        try:
            assert wait_for(lambda: relay.bytes_in > directions.PIPE_SIZE, timeout=30)
            with socket.create_connection((HOST, relay.port), timeout=10) as small:
                for i in range(20):
                    message = f"ping {i}".encode()
                    small.sendall(message)
                    got = b""
                    while len(got) < len(message):
                        got += small.recv(100)
                    assert got == message
        finally:
            bulk.join(60)
        assert result and hashlib.sha256(result[0]).digest() == hashlib.sha256(payload).digest()
    finally:
        relay.stop()
        target.close()


def test_loopback_target_relays_without_waiting_for_a_connect_round() -> None:
    """A loopback target's handshake completes inside connect(): the pair relays at once
    and no connect deadline is kept for it; a refused target still fails as before."""
    target = Target(echo)
    relay = start_relay(target.port)
    try:
        assert echo_roundtrip(relay.port, b"hello") == b"hello"
        assert relay.stats.connect_failures == 0
        assert not [d for d in relay._deadlines if d[2].connecting]
    finally:
        relay.stop()
        target.close()
    unconnected = socket.socket()
    with unconnected:
        assert not relay_module._connected(unconnected)
