"""The blocking Client and the CLI on real loopback sockets."""

from __future__ import annotations

import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from client_support import CREATE_DATA, TOKEN, UUID, TinyServer
from protocol_support import STAT_RESPONSE, Wire

from anweddol_actors.bench.deployed_client import DeployedClient, DeployedClientError
from anweddol_actors.cli import main as cli_main
from anweddol_actors.client import (
    Client,
    ClientConnectionError,
    ClientProtocolError,
    ClientTimeout,
    InvalidResponse,
)

ROOT = Path(__file__).resolve().parents[2]


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"peer closed after {len(data)} of {n} bytes"
        data += chunk
    return data


@pytest.fixture
def client(tiny_server, client_key) -> Client:
    return Client("127.0.0.1", tiny_server.port, timeout=5, private_key=client_key)


def test_stat_round_trip(client, tiny_server):
    response = client.stat()
    assert response == {
        "success": True,
        "message": "OK",
        "data": {"version": "test", "uptime": 1, "available": 2},
    }
    assert tiny_server.requests[0].payload == {"verb": "STAT", "parameters": {}}
    assert tiny_server.errors == []


def test_stat_latency_has_no_nagle_stall(client):
    """Each side writes once per turn with TCP_NODELAY: no 40 ms delayed-ACK waits."""
    latencies = []
    for _ in range(15):
        started = time.perf_counter()
        client.stat()
        latencies.append(time.perf_counter() - started)
    p50 = statistics.median(latencies)
    print(f"STAT over loopback, 2048-bit keys: p50 {p50 * 1000:.1f} ms")
    assert p50 < 0.1


def test_create_then_destroy(client, tiny_server):
    created = client.create(access_token="tok")
    assert created["data"] == CREATE_DATA
    assert tiny_server.requests[-1].payload["parameters"] == {"access_token": "tok"}
    assert client.destroy(UUID, TOKEN)["success"] is True
    refused = client.destroy(UUID, "x" * 255)
    assert refused == {"success": False, "message": "Bad authentication", "data": {}}


def test_custom_verb(client):
    response = client.request("PING", {"anything": [1]})
    assert response["message"] == "Bad request (Unhandled verb)"


def test_malformed_response_is_rejected(server_key, client_key):
    server = TinyServer(server_key, lambda request: {"success": "yes", "message": "OK"})
    try:
        with pytest.raises(InvalidResponse, match="malformed response") as info:
            Client("127.0.0.1", server.port, timeout=5, private_key=client_key).stat()
        assert info.value.errors == {
            "data": ["required field"],
            "success": ["must be of boolean type"],
        }
    finally:
        server.close()


def test_connection_refused(client_key):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ClientConnectionError, match=f"cannot connect to 127.0.0.1:{port}: "):
        Client("127.0.0.1", port, timeout=2, private_key=client_key).stat()


@pytest.fixture
def raw_listener():
    listener = socket.create_server(("127.0.0.1", 0))
    yield listener
    listener.close()


def test_silent_server_times_out(raw_listener, client_key):
    port = raw_listener.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(ClientTimeout, match="did not answer within 0.3 s"):
        Client("127.0.0.1", port, timeout=0.3, private_key=client_key).stat()
    assert time.perf_counter() - started < 2


def test_server_closing_without_answer(raw_listener, client_key):
    """Like the deployed server's IP filter: closed before the key exchange answers."""
    port = raw_listener.getsockname()[1]

    def close_first():
        sock, _ = raw_listener.accept()
        # Read what the client sent first: closing with unread data would reset instead.
        recv_exact(sock, 8)
        sock.close()

    thread = threading.Thread(target=close_first)
    thread.start()
    with pytest.raises(ClientProtocolError, match="during the ack of the key length"):
        Client("127.0.0.1", port, timeout=5, private_key=client_key).stat()
    thread.join(5)


def test_server_resetting(raw_listener, client_key):
    port = raw_listener.getsockname()[1]

    def reset():
        sock, _ = raw_listener.accept()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    thread = threading.Thread(target=reset)
    thread.start()
    with pytest.raises((ClientConnectionError, ClientProtocolError)) as info:
        Client("127.0.0.1", port, timeout=5, private_key=client_key).stat()
    thread.join(5)
    assert "\n" not in str(info.value)


def test_document_client_against_server(tiny_server, client_key):
    """A client written from PROTOCOL.md, one write per step as the deployed one does
    (anweddol_actors.bench.deployed_client): STAT, CREATE and DESTROY."""
    client = DeployedClient("127.0.0.1", tiny_server.port, client_key, timeout=5)
    assert client.stat()["data"]["version"] == "test"
    created = client.create()
    assert created["data"] == CREATE_DATA
    assert client.destroy(UUID, TOKEN)["success"] is True
    assert [r.payload["verb"] for r in tiny_server.requests[-3:]] == ["STAT", "CREATE", "DESTROY"]
    assert tiny_server.requests[-1].payload["parameters"] == {
        "container_uuid": UUID,
        "client_token": TOKEN,
    }


def test_document_client_refused_by_silent_server(raw_listener, client_key):
    """A server that accepts and says nothing: the deployed-style client times out, bounded."""
    port = raw_listener.getsockname()[1]
    with pytest.raises(DeployedClientError):
        DeployedClient("127.0.0.1", port, client_key, timeout=0.5).stat()


def test_client_against_document_server(raw_listener, server_key, client_key):
    """Our Client against a server written from PROTOCOL.md, one write per step."""
    port = raw_listener.getsockname()[1]
    seen: dict = {}

    def serve():
        sock, _ = raw_listener.accept()
        with sock:
            length = int(recv_exact(sock, 8).rstrip(b"="))
            sock.sendall(b"1")
            client_public = Wire.load_public(recv_exact(sock, length))
            sock.sendall(b"1")
            pem = Wire.pem(server_key)
            sock.sendall(Wire.key_length(pem))
            assert recv_exact(sock, 1) == b"1"
            sock.sendall(pem)
            assert recv_exact(sock, 1) == b"1"
            secret = server_key.decrypt(recv_exact(sock, 256), Wire.oaep())
            sock.sendall(b"1")
            sock.sendall(Wire().secret_block(client_public, secret))
            assert recv_exact(sock, 1) == b"1"
            wire = Wire(secret[:32], secret[32:])
            length = wire.read_length(recv_exact(sock, 16))
            sock.sendall(b"1")
            seen["request"] = wire.read_body(recv_exact(sock, length))
            frame, body = wire.json_message(STAT_RESPONSE)
            sock.sendall(frame)
            assert recv_exact(sock, 1) == b"1"
            sock.sendall(body)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        response = Client("127.0.0.1", port, timeout=5, private_key=client_key).stat("t0k")
    finally:
        thread.join(5)
    assert response == STAT_RESPONSE
    assert seen["request"] == {"verb": "STAT", "parameters": {"access_token": "t0k"}}


class TestCli:
    def run_module(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run(
            [sys.executable, "-m", "anweddol_actors", "client", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env,
        )

    def test_stat_json_subprocess(self, tiny_server):
        done = self.run_module("stat", "127.0.0.1", "--port", str(tiny_server.port), "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {
            "success": True,
            "message": "OK",
            "data": {"version": "test", "uptime": 1, "available": 2},
        }

    def test_connection_error_subprocess(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        done = self.run_module("stat", "127.0.0.1", "--port", str(port), "--key-size", "1024")
        assert done.returncode == 2
        assert done.stderr.strip().count("\n") == 0
        assert done.stderr.startswith(f"error: cannot connect to 127.0.0.1:{port}: ")

    def test_create_prints_ssh_command(self, tiny_server, capsys):
        port = str(tiny_server.port)
        assert (
            cli_main(["client", "create", "127.0.0.1", "--port", port, "--key-size", "1024"]) == 0
        )
        out = capsys.readouterr().out
        assert "ssh -p 10022 user_01234@127.0.0.1" in out
        assert f"container_password: {'Pass' * 30}" in out
        assert f"--port {port} --uuid {UUID} --token {TOKEN}" in out

    def test_destroy_from_create_json(self, tiny_server, capsys, tmp_path):
        common = ["127.0.0.1", "--port", str(tiny_server.port), "--key-size", "1024"]
        assert cli_main(["client", "create", *common, "--json"]) == 0
        credentials = tmp_path / "credentials.json"
        credentials.write_text(capsys.readouterr().out)
        assert cli_main(["client", "destroy", *common, "--credentials", str(credentials)]) == 0
        assert capsys.readouterr().out.strip() == f"container {UUID} destroyed"
        assert tiny_server.requests[-1].payload["parameters"] == {
            "container_uuid": UUID,
            "client_token": TOKEN,
        }

    def test_destroy_refused_exits_1(self, tiny_server, capsys):
        args = [
            "client",
            "destroy",
            "127.0.0.1",
            "--port",
            str(tiny_server.port),
            "--key-size",
            "1024",
            "--uuid",
            UUID,
            "--token",
            "y" * 255,
        ]
        assert cli_main(args) == 1
        assert capsys.readouterr().err.strip() == "server refused: Bad authentication"

    def test_destroy_needs_credentials(self, capsys):
        assert cli_main(["client", "destroy", "127.0.0.1", "--key-size", "1024"]) == 2
        assert "destroy needs --uuid and --token" in capsys.readouterr().err
