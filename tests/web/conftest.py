"""Fixtures for the HTTP front end's tests: a real engine (libvirt's ``test:///default``,
an in-memory journal unless a file is asked for, CREATE refused at once by
``max_containers=0``) with the web server on 127.0.0.1 and a kernel-chosen port."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from serverharness import RunningServer, bare_server, serve_web

from anweddol_actors.core.crypto import RSAWrapper
from anweddol_actors.core.server import ServerInterface
from anweddol_actors.web.server import WebServer


@pytest.fixture(scope="session")
def web_rsa() -> RSAWrapper:
    return RSAWrapper(key_size=2048)


@dataclass
class Web:
    """A running engine and its web front end."""

    running: RunningServer
    web: WebServer

    @property
    def url(self) -> str:
        return self.web.url

    @property
    def server(self) -> ServerInterface:
        return self.running.server

    @property
    def engine(self):
        return self.running.engine

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.web.address[1])

    def stop(self) -> None:
        self.web.stop()
        if self.running.thread.is_alive():
            self.running.stop()


@pytest.fixture
def make_web(web_rsa):
    """Factory: ``make_web(setup=None, web=None, **settings)`` → a started :class:`Web`;
    ``setup(server)`` runs before the start (handlers, policies), ``web`` is a dict of
    WebSettings fields. Stopped at teardown."""
    made: list[Web] = []

    def factory(setup=None, web: dict | None = None, **overrides) -> Web:
        running = bare_server(web_rsa, 3, **{"max_containers": 0, **overrides})
        if setup is not None:
            setup(running.server)
        running.start()
        try:
            web_server = serve_web(running.engine, **(web or {}))
        except BaseException:
            running.stop()
            raise
        made.append(Web(running, web_server))
        return made[-1]

    yield factory
    for web in made:
        web.stop()
