"""Endpoint shell actors: the SSH session to a guest's ``endpoint`` administration user.

Each shell is its own actor so that its blocking SSH calls stall nobody else; the
session that creates a container asks it, step by step, and fires the seed's events
between the steps, after each step's transition is journalled.
"""

from __future__ import annotations

from anweddol_actors.actors.base import OwningActor, finish
from anweddol_actors.guest.shell import EndpointShell
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle


class EndpointShellActor(OwningActor):
    def __init__(
        self,
        shell_id: str,
        journal: Journal,
        host: str,
        port: int,
        username: str,
        password: str,
        timeout: float = 10.0,
    ) -> None:
        super().__init__()
        self.id = shell_id
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.timeout = timeout
        self.lifecycle = Lifecycle("endpoint_shell", shell_id, journal)
        self.shell: EndpointShell | None = None
        self.client_credentials: tuple[str, str] | None = None

    def describe(self) -> dict:
        return {
            "id": self.id,
            "state": self.lifecycle.state,
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "client_credentials": self.client_credentials,
        }

    def set_target(self, host: str | None = None, port: int | None = None) -> None:
        if self.lifecycle.state != "created":
            raise RuntimeError("the endpoint shell is already opened")
        self.host = host if host is not None else self.host
        self.port = port if port is not None else self.port

    def set_credentials(self, username: str, password: str, port: int) -> None:
        if self.lifecycle.state != "created":
            raise RuntimeError("the endpoint shell is already opened")
        self.username, self.password, self.port = username, password, port

    def open(self) -> None:
        shell = EndpointShell(
            self.host, self.port, self.username, self.password, timeout=self.timeout
        )
        shell.open()
        self.shell = shell
        try:
            self.lifecycle.fire("open", data={"host": self.host, "port": self.port})
        except Exception:
            shell.close()
            self.shell = None
            raise

    def administer(self, username: str, password: str, port: int = 22) -> None:
        if self.shell is None:
            raise RuntimeError("the endpoint shell is not opened")
        self.shell.administer(username, password, port)
        self.client_credentials = (username, password)

    def execute(self, command: str) -> tuple[str, str, int]:
        if self.shell is None:
            raise RuntimeError("the endpoint shell is not opened")
        return self.shell.execute(command)

    def close(self, context: int | None = None, reason: str | None = None) -> bool:
        """Close the SSH session; True when it was open. Always ends ``destroyed``."""
        was_open = self.shell is not None
        if self.shell is not None:
            try:
                self.shell.close()
            finally:
                self.shell = None
        finish(self.lifecycle, "close", context, reason)
        return was_open

    def release(self) -> None:
        self.close(reason="actor stopped" if self.shell is not None else None)
