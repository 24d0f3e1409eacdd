"""A seed script ends when its server is done, as with the original: ``stopServer()``
(or never starting) leaves no thread that keeps the Python process alive."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys, threading
    from anweddol_actors.client import Client
    from anweddol_actors.core.crypto import RSAWrapper
    from anweddol_actors.core.server import ServerInterface
    from anweddol_actors.engine.settings import Settings

    settings = Settings(database=":memory:", libvirt_uri="test:///default")
    server = ServerInterface(
        "/nonexistent/container.iso", "127.0.0.1", 0,
        runtime_rsa_wrapper=RSAWrapper(key_size=2048), settings=settings,
    )
    if sys.argv[1] == "started":
        started = threading.Event()
        server.on_server_started(lambda context, data: started.set())
        threading.Thread(target=server.startServer).start()
        assert started.wait(30)
        print(Client(*server.listen_address, timeout=10).stat()["message"])
        server.stopServer()
    print("end of script")
    """
)


@pytest.mark.parametrize("mode", ["started", "never-started"])
def test_the_process_exits_after_stop_server(tmp_path, mode):
    script = tmp_path / "seed_script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Bounded: a thread left alive would hold the interpreter at exit for ever.
    done = subprocess.run(
        [sys.executable, str(script), mode], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    expected = ["OK", "end of script"] if mode == "started" else ["end of script"]
    assert done.stdout.split("\n")[:-1] == expected
