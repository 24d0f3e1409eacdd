"""The seed server a benchmark measures, run in the benchmark's child process, and the
end of that child.

Every benchmark that talks to a server over loopback runs it the same way: a
``ServerInterface`` on 127.0.0.1 and a kernel-chosen port, libvirt's test driver (nothing
boots), ``startServer`` on a thread of the child (so the server has its own GIL). The
benchmark's ``serve`` function (the child's target) calls :func:`start_server`, tells the
parent the port, waits for its word, then calls :func:`stop_server`.

The server's modules are imported inside the functions: only the child needs them (with
the ``fork`` context, what the parent imported would count in the child's baseline).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from typing import Any


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


def end_child(process: Any, folder: str, stop_event: Any = None) -> None:
    """Tell the child to stop (``stop_event``), wait for it (bounded: terminated after
    120 s), and remove the benchmark's ``folder``."""
    if stop_event is not None:
        stop_event.set()
    process.join(timeout=120)
    if process.is_alive():
        process.terminate()
        process.join()
    shutil.rmtree(folder, ignore_errors=True)


def sample(call: Callable[[], Any], runs: int = 20) -> list[float]:
    """The seconds each of ``runs`` calls of ``call`` took, one after the other."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples
