"""Helpers of the HTTP front end's tests (a module of its own: ``conftest`` is a name
every test folder has, so tests never import from it)."""

from __future__ import annotations

import os
import threading
import time

import pykka

from anweddol_actors.engine.session import SessionActor


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def wait_quiet(timeout: float = 10.0) -> None:
    """Until no session actor is alive."""
    deadline = time.monotonic() + timeout
    while pykka.ActorRegistry.get_by_class(SessionActor):
        assert time.monotonic() < deadline, "a session outlived the request"
        time.sleep(0.01)


class Baseline:
    """Threads and descriptors before a case; :meth:`check` waits until they are back."""

    def __init__(self) -> None:
        wait_quiet()
        self.threads = threading.active_count()
        self.fds = open_fds()

    def check(self, timeout: float = 5.0) -> None:
        wait_quiet()
        deadline = time.monotonic() + timeout
        while threading.active_count() > self.threads or open_fds() > self.fds:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"leak: threads {threading.active_count()} > {self.threads} "
                    f"or fds {open_fds()} > {self.fds}"
                )
            time.sleep(0.02)


def live_sessions(engine) -> list[dict]:
    """Sessions the journal holds alive: none once every request ended (no half-written
    session)."""
    return engine.journal.live_entities(kind="session")
