"""The seed server a benchmark measures, run in the benchmark's child process.

Every benchmark that talks to a server over loopback runs it the same way: a
``ServerInterface`` on 127.0.0.1 and a kernel-chosen port, libvirt's test driver (nothing
boots), ``startServer`` on a thread of the child (so the server has its own GIL). The
benchmark's ``serve`` function (the child's target) calls :func:`start_server`, tells the
parent the port, waits for its word, then calls :func:`stop_server`.

The server's modules are imported inside the functions: only the child needs them (with
the ``fork`` context, what the parent imported would count in the child's baseline).

The end of that child (``end_child``) and sequential timings (``sample``) live in
``anweddol_actors.bench.server`` with the rest of ``python -m anweddol_actors bench``'s
measuring, and are re-exported here. ``start_server`` stays here: it runs the seed façade
(``anweddol_actors.core``), which the bench package, below it in the layers, may not import.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from anweddol_actors.bench.server import end_child, sample  # noqa: E402

__all__ = ["end_child", "sample", "start_server", "stop_server"]


def start_server(
    settings: Any,
    *,
    pem: bytes | None = None,
    key_size: int = 2048,
    client_timeout: float = 60.0,
    prepare: Callable[[Any], None] | None = None,
) -> tuple[Any, threading.Thread]:
    """A started ``ServerInterface`` (``settings``: its engine ``Settings``) and the
    thread running it. ``pem``: the server's private key (PEM), else a new one of
    ``key_size`` bits; ``prepare(server)`` runs before the start (metrics, handlers)."""
    # Imported here: the child's import, not the parent's (see the module's docstring).
    from anweddol_actors.core.crypto import RSAWrapper
    from anweddol_actors.core.server import ServerInterface

    if pem is None:
        wrapper = RSAWrapper(key_size=key_size)
    else:
        wrapper = RSAWrapper(generate_key_pair=False)
        wrapper.setPrivateKey(pem, pem_format=True)
    server = ServerInterface(
        "/nonexistent.iso",
        "127.0.0.1",
        0,
        client_timeout,
        runtime_rsa_wrapper=wrapper,
        settings=settings,
    )
    if prepare is not None:
        prepare(server)
    thread = threading.Thread(target=server.startServer, daemon=True)
    thread.start()
    while not server.isRunning():
        time.sleep(0.01)
    return server, thread


def stop_server(server: Any, thread: threading.Thread) -> None:
    """Stop what :func:`start_server` started, and close it."""
    server.stopServer()
    thread.join()
    server.close()
