"""Bad input over HTTP on real sockets: each case gets its normalized answer or HTTP
status, the server serves the next request, and nothing is left behind: no session
actor, thread or descriptor, no session alive in the journal, no connection slot."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from serverharness import record_events
from webharness import Baseline, live_sessions

BAD_REQUEST = "Bad request"


@pytest.fixture
def web(make_web):
    holder: list = []
    running = make_web(lambda server: holder.append(record_events(server)))
    running.events = holder[0]
    # Warm up (first imports, the first session actor) before counting threads and fds.
    assert httpx.post(running.url + "/stat", timeout=10).status_code == 200
    Baseline()
    running.events.clear()
    return running


def after_case(web, baseline: Baseline) -> None:
    """The invariants every case ends with."""
    assert httpx.post(web.url + "/stat", timeout=10).json()["success"] is True
    baseline.check()
    assert live_sessions(web.engine) == []
    assert web.engine.connection_limits.open == 0


def raw(web) -> socket.socket:
    return socket.create_connection(web.address, timeout=10)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "request: ['the body is not a JSON document']"),
        (b"\xff\xfe\x00garbage", "request: ['the body is not a JSON document']"),
        (b"[" * 100_000 + b"]" * 100_000, "request: ['the body is not a JSON document']"),
        (b"[1, 2]", "parameters: ['must be of dict type']"),
        (b'"text"', "parameters: ['must be of dict type']"),
        (b"null", "parameters: ['null value not allowed']"),
        (b'{"container_uuid": 5, "client_token": 7}', "parameters: "),
        (b'{"' + b"k" * 100 + b'": 1}', "parameters: "),
        (b"{" + b",".join(b'"k%d": 1' % i for i in range(40)) + b"}", "parameters: "),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "deep-nesting",
        "array",
        "string",
        "null",
        "wrong-types",
        "long-key",
        "too-many-keys",
    ],
)
def test_malformed_bodies_take_the_malformed_path(web, body, reason):
    baseline = Baseline()
    response = httpx.post(web.url + "/destroy", content=body, timeout=10)
    assert response.status_code == 200
    answer = response.json()
    assert answer["success"] is False and answer["data"] == {}
    assert answer["message"].startswith(f"{BAD_REQUEST} ({reason}"), answer
    names = [name for name, _, _ in web.events]
    assert "on_malformed_request" in names and "on_request" not in names
    after_case(web, baseline)


def test_unknown_verb_and_invalid_verb_names(web):
    baseline = Baseline()
    answer = httpx.post(web.url + "/frobnicate", timeout=10).json()
    assert answer["message"] == "Bad request (Unhandled verb)"
    # Not a verb at all (the engine's regex): malformed.
    answer = httpx.post(web.url + "/stat-2", timeout=10).json()
    assert answer["message"].startswith("Bad request (verb:")
    answer = httpx.post(web.url + "/" + "a" * 500, timeout=10).json()
    assert answer["message"].startswith("Bad request (verb:")
    after_case(web, baseline)


@pytest.mark.parametrize(
    ("method", "path", "status", "reason"),
    [
        ("GET", "/stat", 405, "Method not allowed"),
        ("PUT", "/create", 405, "Method not allowed"),
        ("DELETE", "/destroy", 405, "Method not allowed"),
        ("GET", "/no/such/path", 404, "Unknown path"),
        ("POST", "/a/b", 404, "Unknown path"),
    ],
)
def test_wrong_method_and_unknown_path(web, method, path, status, reason):
    baseline = Baseline()
    response = httpx.request(method, web.url + path, timeout=10)
    assert response.status_code == status
    assert response.json() == {"success": False, "message": f"Bad request ({reason})", "data": {}}
    assert web.events == []  # refused before any session
    after_case(web, baseline)


def test_body_over_the_limit_by_content_length_is_refused_unread(web):
    baseline = Baseline()
    sock = raw(web)
    # Claims 100 MB and sends none of it: answered at once, never read.
    sock.sendall(
        b"POST /stat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000000\r\n\r\n"
    )
    reply = read_all(sock)  # the server closes: the body was not read
    sock.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in head.lower()
    assert (
        body
        == b'{"success":false,"message":"Bad request (Body larger than 1048576 bytes)","data":{}}'
    )
    assert web.events == []
    after_case(web, baseline)


def test_chunked_body_over_the_limit_is_cut_while_read(web):
    baseline = Baseline()
    sock = raw(web)
    sock.sendall(b"POST /stat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 65536
    sent = 0
    try:
        while sent < 8 * 1048576:  # far past the limit: the server stops reading first
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        reply = read_all(sock)
    except ConnectionResetError:
        reply = b""  # the rest of our body was unread at close: the kernel resets
    sock.close()
    assert reply == b"" or reply.startswith(b"HTTP/1.1 413 ")
    assert sent < 8 * 1048576 or reply.startswith(b"HTTP/1.1 413 ")
    after_case(web, baseline)


@pytest.mark.parametrize("part", ["headers", "body"])
def test_slowloris_is_cut_at_the_request_deadline(make_web, part):
    deadline = 1.0
    web = make_web(web={"request_deadline": deadline})
    assert httpx.post(web.url + "/stat", timeout=10).status_code == 200
    baseline = Baseline()
    sock = raw(web)
    started = time.monotonic()
    if part == "headers":
        trickle = b"POST /stat HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    else:
        sock.sendall(b"POST /stat HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        trickle = b" " * 1000
    cut = False
    for byte in trickle:
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            cut = True
            break
        sock.settimeout(0.2)
        try:
            if sock.recv(1) == b"":
                cut = True
                break
        except TimeoutError:
            pass
        except ConnectionResetError:
            cut = True
            break
        # Bounded, whatever the server does: the test fails rather than trickles for ever.
        if time.monotonic() - started > 20 * deadline:
            break
    sock.close()
    assert cut, "the server kept a trickling connection past its request deadline"
    assert web.web.protocol.cut == 1
    after_case(web, baseline)


def test_peer_that_leaves_mid_body_holds_nothing(web):
    baseline = Baseline()
    sock = raw(web)
    sock.sendall(b"POST /stat HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    time.sleep(0.2)  # the application is reading the body
    sock.close()
    after_case(web, baseline)
    # One session only, after_case's STAT: none for a body never complete.
    names = [name for name, _, _ in web.events]
    assert names.count("on_client_initialized") == 1 and "on_malformed_request" not in names


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"POST /stat HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        # Headers still incomplete past h11_max_incomplete_event_size (16 KiB).
        b"POST /stat HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000,
    ],
    ids=["garbage", "bad-content-length", "headers-too-large"],
)
def test_unparsable_http_is_400_in_the_normalized_shape(web, request_bytes):
    baseline = Baseline()
    sock = raw(web)
    sock.sendall(request_bytes)
    reply = read_all(sock)
    sock.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), reply
    assert body == b'{"success":false,"message":"Bad request (Invalid HTTP request)","data":{}}'
    assert web.events == []
    after_case(web, baseline)


def test_connections_past_the_backstop_get_a_normalized_503(make_web):
    web = make_web(web={"limit_concurrency": 2})
    assert httpx.post(web.url + "/stat", timeout=10).status_code == 200
    baseline = Baseline()
    idle = [raw(web) for _ in range(2)]
    try:
        time.sleep(0.2)  # both accepted by the server
        response = httpx.post(web.url + "/stat", timeout=10)
        assert response.status_code == 503
        assert response.json() == {
            "success": False,
            "message": "Unavailable (Too many connections)",
            "data": {},
        }
        assert web.web.protocol.refused == 1
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    assert httpx.post(web.url + "/stat", timeout=10).status_code == 200
    baseline.check()
    assert live_sessions(web.engine) == [] and web.engine.connection_limits.open == 0
