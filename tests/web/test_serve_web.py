"""``serve --web`` and ``web_server.enabled``: the HTTP front end in serve's process, on
libvirt's test driver. It starts once the TCP server listens, says where, serves the same
engine, and stops first; a port in use is one line and a non-zero exit."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from commands import command_env

from anweddol_actors.client import Client


def write_config(folder: Path, web: str = "") -> Path:
    iso = folder / "stand-in.iso"
    iso.write_bytes(b"not booted by this test")
    config = folder / "config.yaml"
    config.write_text(
        "container:\n"
        "  libvirt_uri: 'test:///default'\n"
        f"  container_iso_file_path: '{iso}'\n"
        "server:\n"
        "  bind_address: 127.0.0.1\n"
        f"  database: '{folder}/journal.sqlite3'\n"
        f"  public_rsa_key_file_path: '{folder}/rsa/public.pem'\n"
        f"  private_rsa_key_file_path: '{folder}/rsa/private.pem'\n"
        f"  admin_socket_path: '{folder}/admin.sock'\n"
        f"{web}"
    )
    return config


class Serve:
    """``serve`` as a child; its standard error drained into ``lines``."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "anweddol_actors", "serve", *args],
            stderr=subprocess.PIPE,
            text=True,
            env=command_env(),
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r}:\n{''.join(self.lines[-20:])}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError("serve did not stop") from None
        self._reader.join(10)
        return self.process.returncode


def test_serve_web_runs_the_http_front_end(tmp_path):
    config = write_config(tmp_path)
    serve = Serve("--config", str(config), "--port", "0", "--web", "--web-port", "0")
    try:
        port = int(serve.wait_for(r"serving on [\d.]+:(\d+)").group(1))
        url = serve.wait_for(r"web server on (http://127\.0\.0\.1:\d+)").group(1)
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
        serve = Serve("--config", str(config), "--port", "0")
        try:
            serve.process.wait(timeout=60)
        finally:
            code = serve.stop()
    assert code == 1
    errors = [line for line in serve.lines if " ERROR " in line or "Traceback" in line]
    assert errors and len(errors) == 1, "".join(serve.lines)
    assert f"web_server: cannot listen on 127.0.0.1:{port}: Address already in use" in errors[0]
