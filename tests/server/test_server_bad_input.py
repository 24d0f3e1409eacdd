"""Bad input on real sockets: every case ends in a closed connection, the right event and
response (where one can still be sent), and a server that serves the next client, with no
thread or socket left behind."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from rawpeer import RawPeer, closed_by_peer, length_field, recv_exact

from anweddol_actors.client import Client
from anweddol_actors.protocol.crypto import aes_cbc_encrypt, public_pem


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def server(make_server):
    running = make_server(start=False, client_timeout=1.0)
    events: list[tuple[str, dict]] = []
    lock = threading.Lock()
    for event in ("on_runtime_error", "on_malformed_request", "on_client_closed"):

        def handler(context, data, _event=event):
            with lock:
                events.append((_event, data))

        running.server.setEventHandler(event, handler)
    running.events = events
    running.start()
    # Warm up (first-use imports, the first session actor) before counting threads/fds.
    Client(*running.address, timeout=5).stat()
    wait_quiet(running)
    return running


def wait_quiet(running, timeout: float = 10.0) -> None:
    """Wait until no session actor is alive."""
    import pykka

    from anweddol_actors.engine.session import SessionActor

    deadline = time.monotonic() + timeout
    while pykka.ActorRegistry.get_by_class(SessionActor):
        assert time.monotonic() < deadline, "a session outlived the test"
        time.sleep(0.01)


def raw(server) -> socket.socket:
    sock = socket.create_connection(server.address, timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def after_case(server, event: str | None = "on_runtime_error") -> dict | None:
    """The invariants every bad-input case ends with."""
    wait_quiet(server)
    names = [name for name, _ in server.events]
    if event is not None:
        assert event in names, names
    assert Client(*server.address, timeout=5).stat()["success"] is True
    wait_quiet(server)
    found = [data for name, data in server.events if name == event]
    return found[0] if found else None


def check_no_leaks(server, threads_before: int, fds_before: int) -> None:
    deadline = time.monotonic() + 5
    while threading.active_count() > threads_before or open_fds() > fds_before:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"leak: threads {threading.active_count()} > {threads_before} "
                f"or fds {open_fds()} > {fds_before}"
            )
        time.sleep(0.02)


@pytest.mark.parametrize(
    "field",
    [b"abc=====", b"0=======", b"-5======", b"12ab====", b"99999999", b"========", b"1.5====="],
    ids=["garbage", "zero", "negative", "non-numeric", "too-large", "empty", "fraction"],
)
def test_bad_key_length_field_is_refused(server, field):
    threads, fds = threading.active_count(), open_fds()
    sock = raw(server)
    sock.sendall(field)
    assert recv_exact(sock, 1) == b"0"
    assert closed_by_peer(sock)
    sock.close()
    data = after_case(server)
    assert "exception_object" in data and "traceback" in data and "client_socket" in data
    check_no_leaks(server, threads, fds)


def test_truncated_key(server, client_key):
    threads, fds = threading.active_count(), open_fds()
    pem = public_pem(client_key)
    sock = raw(server)
    sock.sendall(length_field(len(pem)))
    assert recv_exact(sock, 1) == b"1"
    sock.sendall(pem[:100])
    sock.shutdown(socket.SHUT_WR)
    assert closed_by_peer(sock)
    sock.close()
    after_case(server)
    check_no_leaks(server, threads, fds)


def test_non_pem_key(server):
    threads, fds = threading.active_count(), open_fds()
    sock = raw(server)
    junk = b"this is not a PEM public key" * 10
    sock.sendall(length_field(len(junk)))
    assert recv_exact(sock, 1) == b"1"
    sock.sendall(junk)
    assert recv_exact(sock, 1) == b"0"
    assert closed_by_peer(sock)
    sock.close()
    after_case(server)
    check_no_leaks(server, threads, fds)


def test_rsa_block_that_does_not_decrypt(server, client_key):
    threads, fds = threading.active_count(), open_fds()
    peer = RawPeer(server.address, client_key)
    assert peer.send_key() == b"1"
    server_key = peer.receive_server_key()
    peer.sock.sendall(os.urandom(server_key.key_size // 8))
    assert peer.ack() == b"0"
    assert closed_by_peer(peer.sock)
    peer.close()
    after_case(server)
    check_no_leaks(server, threads, fds)


def test_wrong_aes_key(server, client_key):
    threads, fds = threading.active_count(), open_fds()
    peer = RawPeer(server.address, client_key)
    peer.handshake()
    ack = peer.send_frame(b'{"verb": "STAT", "parameters": {}}', key=os.urandom(32))
    assert ack == b"0"
    assert closed_by_peer(peer.sock)
    peer.close()
    after_case(server)
    check_no_leaks(server, threads, fds)


def test_frame_cut_midway(server, client_key):
    threads, fds = threading.active_count(), open_fds()
    peer = RawPeer(server.address, client_key)
    peer.handshake()
    body = aes_cbc_encrypt(peer.key, peer.iv, b'{"verb": "STAT", "parameters": {}}' * 10)
    peer.sock.sendall(aes_cbc_encrypt(peer.key, peer.iv, str(len(body) + 16).encode()))
    assert peer.ack() == b"1"
    peer.sock.sendall(body[: len(body) // 2])
    peer.sock.shutdown(socket.SHUT_WR)
    assert closed_by_peer(peer.sock)
    peer.close()
    after_case(server)
    check_no_leaks(server, threads, fds)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2, 3]", b'"a string"', b"\xff\xfe\x00"],
    ids=["invalid-json", "array", "string", "not-utf8"],
)
def test_request_that_is_not_a_json_object(server, client_key, body):
    threads, fds = threading.active_count(), open_fds()
    peer = RawPeer(server.address, client_key)
    peer.handshake()
    peer.send_frame(body)
    response = peer.receive_frame()
    assert response["success"] is False and response["message"].startswith("Bad request")
    assert closed_by_peer(peer.sock)
    peer.close()
    data = after_case(server, "on_malformed_request")
    assert isinstance(data["errors_dict"], dict) and data["errors_dict"]
    check_no_leaks(server, threads, fds)


def test_peer_silent_mid_handshake_times_out(server, client_key):
    threads, fds = threading.active_count(), open_fds()
    pem = public_pem(client_key)
    sock = raw(server)
    sock.sendall(length_field(len(pem)))
    assert recv_exact(sock, 1) == b"1"
    started = time.monotonic()
    assert closed_by_peer(sock, timeout=10)  # the server's client timeout is 1 s
    assert time.monotonic() - started < 5
    sock.close()
    data = after_case(server)
    assert isinstance(data["exception_object"], TimeoutError | OSError)
    check_no_leaks(server, threads, fds)


def test_silent_client_does_not_delay_others(make_server):
    """Head-of-line blocking (PROTOCOL.md §4): idle connections must not stall a STAT.

    The server waits 60 s for a silent peer; our client gives up after 10 s. With the
    original's design (key exchange on the accepting thread) the STAT could not finish.
    """
    running = make_server(client_timeout=60.0)
    idle = [raw(running) for _ in range(5)]
    assert Client(*running.address, timeout=10).stat()["success"] is True
    for sock in idle:
        sock.settimeout(0)
        with pytest.raises(BlockingIOError):
            sock.recv(1)  # still open: the server is still waiting on it, not done with it
        sock.close()


def test_oversized_frame_is_refused(make_server, client_key):
    running = make_server(client_timeout=2.0, max_message_size=4096)
    peer = RawPeer(running.address, client_key)
    peer.handshake()
    ack = peer.send_frame(b'{"verb": "STAT", "parameters": {"pad": "' + b"x" * 8192 + b'"}}')
    assert ack == b"0"
    assert closed_by_peer(peer.sock)
    peer.close()
    assert Client(*running.address, timeout=5).stat()["success"] is True
