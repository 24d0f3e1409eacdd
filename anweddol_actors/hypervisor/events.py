"""libvirt's default event loop, run in one daemon thread for the whole process.

libvirt needs an event loop for domain lifecycle events and for connection keepalives.
The default implementation is process-global and must be registered before the
connections that rely on it are opened; only one thread may run it. So: every Hypervisor
registers it before opening its connection and holds a reference on the loop thread while
open; the last ``release()`` stops the thread (woken through a zero-delay timeout, which is
how libvirt's loop is interrupted) and joins it.

A connection opened after registration answers the daemon's keepalive pings only while the
loop runs: that is why the thread lives as long as any Hypervisor, not just the watchers.
"""

from __future__ import annotations

import logging
import threading

import libvirt

log = logging.getLogger(__name__)

_lock = threading.Lock()
_registered = False
_users = 0
_thread: threading.Thread | None = None
_stop: threading.Event | None = None


def _ignore_libvirt_error(_ctx: object, _err: object) -> None:
    # libvirt prints every error on stderr by default; ours are raised as exceptions.
    return None


def silence_errors() -> None:
    libvirt.registerErrorHandler(_ignore_libvirt_error, None)


def register_impl() -> None:
    """Register libvirt's default event implementation (once per process)."""
    global _registered
    with _lock:
        if not _registered:
            silence_errors()
            libvirt.virEventRegisterDefaultImpl()
            _registered = True


def _run(stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            libvirt.virEventRunDefaultImpl()
        except libvirt.libvirtError:
            log.exception("libvirt event loop iteration failed")


def acquire() -> None:
    """Take a reference on the loop thread, starting it if needed."""
    global _users, _thread, _stop
    register_impl()
    with _lock:
        _users += 1
        if _thread is None:
            # One stop flag per thread: a thread still winding down never sees a new flag.
            _stop = threading.Event()
            _thread = threading.Thread(
                target=_run, args=(_stop,), name="libvirt-events", daemon=True
            )
            _thread.start()


def release() -> None:
    """Drop a reference; the last one stops and joins the loop thread."""
    global _users, _thread, _stop
    with _lock:
        _users = max(0, _users - 1)
        if _users or _thread is None or _stop is None:
            return
        thread, _thread = _thread, None
        _stop.set()
        _stop = None
        # A zero-delay timeout makes the blocked loop iteration return.
        timer = libvirt.virEventAddTimeout(0, lambda _timer, _opaque: None, None)
    thread.join(timeout=5)
    libvirt.virEventRemoveTimeout(timer)
    if thread.is_alive():
        log.warning("libvirt event loop thread did not stop within 5s")


def loop_running() -> bool:
    with _lock:
        return _thread is not None and _thread.is_alive()
