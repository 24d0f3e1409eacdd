"""``serve --web`` and ``web_server.enabled``: the HTTP front end in serve's process, on
libvirt's test driver. It starts once the TCP server listens, says where, serves the same
engine, and stops first; a port in use is one line and a non-zero exit."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
from commands import ServeChild, write_test_driver_config

from anweddol_actors.client import Client


def write_config(folder: Path, web: str = "") -> Path:
    """A test-driver server with its admin socket in ``folder``; ``web``: more sections."""
    admin_socket = f"  admin_socket_path: '{folder}/admin.sock'\n"
    return write_test_driver_config(folder, server=admin_socket, sections=web)


def test_serve_web_runs_the_http_front_end(tmp_path):
    config = write_config(tmp_path)
    serve = ServeChild("--config", str(config), "--port", "0", "--web", "--web-port", "0")
    try:
        port = int(serve.wait_for_line(r"serving on [\d.]+:(\d+)").group(1))
        url = serve.wait_for_line(r"web server on (http://127\.0\.0\.1:\d+)").group(1)
        answer = httpx.post(url + "/stat", timeout=10).json()
        assert answer["success"] is True
        # The same engine behind both transports.
        over_tcp = Client("127.0.0.1", port, timeout=30).stat()["data"]
        assert over_tcp["available"] == answer["data"]["available"]
        assert over_tcp["version"] == answer["data"]["version"]
    finally:
        code = serve.stop()
    assert code == 0, "".join(serve.lines)
    log = "".join(serve.lines)
    assert log.index("serving on") < log.index("web server on")
    assert re.search(r"requests: STAT OK in .* transport=http", log), log


def test_web_port_in_use_is_one_line_and_exit_1(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = write_config(tmp_path, f"web_server:\n  enabled: true\n  listen_port: {port}\n")
        serve = ServeChild("--config", str(config), "--port", "0")
        try:
            serve.process.wait(timeout=60)
        finally:
            code = serve.stop()
    assert code == 1
    errors = [line for line in serve.lines if " ERROR " in line or "Traceback" in line]
    assert errors and len(errors) == 1, "".join(serve.lines)
    assert f"web_server: cannot listen on 127.0.0.1:{port}: Address already in use" in errors[0]
