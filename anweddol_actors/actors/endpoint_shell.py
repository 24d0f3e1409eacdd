"""Endpoint shell actors: the SSH session to a guest's ``endpoint`` administration user.

Each shell is its own actor so that its blocking SSH calls stall nobody else; the
session that creates a container asks it, step by step, and fires the seed's events
between the steps, after each step's transition is journalled.

The guest's SSH host key is recorded in the journal at the container's first endpoint
login and required at every later one (another shell actor for the same container, e.g. a
handler's): a guest answering with another key is refused before the password is sent.
"""

from __future__ import annotations

from anweddol_actors.actors.base import EntityActor, FailureListener, Refused, governed
from anweddol_actors.guest.shell import EndpointShell, generate_credentials
from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle, Transition


class ShellNotOpen(Refused, RuntimeError):
    """A command was asked of an endpoint shell that is not open."""


class EndpointShellActor(EntityActor):
    def __init__(
        self,
        shell_id: str,
        journal: Journal,
        host: str | None,
        port: int,
        username: str,
        password: str,
        timeout: float = 10.0,
        on_failed: FailureListener | None = None,
    ) -> None:
        super().__init__(on_failed)
        self.id = shell_id
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.timeout = timeout
        self.journal = journal
        self.lifecycle = Lifecycle("endpoint_shell", shell_id, journal)
        self.shell: EndpointShell | None = None
        # The client's SSH credentials, once generated or stored by a handler; the
        # administration step uses these (a handler's choice is never overwritten).
        self.client_credentials: tuple[str, str] | None = None
        # What the setup script already set in the guest: a handler may administer the
        # guest itself (the seed's way to set its own credentials), and the script refuses
        # a user that exists, so the CREATE's own step must not run it again.
        self.administered: tuple[str, str] | None = None

    def describe(self) -> dict:
        return {
            "id": self.id,
            "state": self.lifecycle.state,
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "client_credentials": self.client_credentials,
            "administered": self.administered,
            "host_key": None if self.shell is None else self.shell.host_key,
        }

    def create(self, context: int | None = None) -> Transition:
        return self.lifecycle.create(context=context, data={"host": self.host, "port": self.port})

    def _require_created(self) -> None:
        if self.lifecycle.state not in ("created",):
            raise ShellNotOpen("the endpoint shell is already opened")

    def set_target(self, host: str | None = None, port: int | None = None) -> None:
        self._require_created()
        self.host = host if host is not None else self.host
        self.port = port if port is not None else self.port

    def set_credentials(self, username: str, password: str, port: int) -> None:
        self._require_created()
        self.username, self.password, self.port = username, password, port

    def store_client_credentials(self, username: str, password: str) -> None:
        self.client_credentials = (username, password)

    def generate_client_credentials(self, password_length: int, store: bool = True):
        """New credentials; stored unless ``store`` is False or a handler stored its own."""
        credentials = generate_credentials(password_length)
        if store:
            self.client_credentials = credentials
        return credentials

    def ensure_client_credentials(self, password_length: int) -> tuple[str, str]:
        """The stored credentials, generated when no handler stored any."""
        if self.client_credentials is None:
            self.client_credentials = generate_credentials(password_length)
        return self.client_credentials

    @governed
    def open(self, context: int | None = None) -> Transition:
        """Journal ``open``, then log in. Opening twice is refused before any connection."""
        transition = self.lifecycle.fire(
            "open", context=context, data={"host": self.host, "port": self.port}
        )
        recorded = self.journal.host_key(self.container_id)
        shell = EndpointShell(
            self.host,
            self.port,
            self.username,
            self.password,
            timeout=self.timeout,
            host_key=recorded,
        )
        self.shell = shell  # held before connecting: a half-open session is closed too
        shell.open()
        if recorded is None and shell.host_key is not None:
            self.journal.record_host_key(self.container_id, shell.host_key)
        return transition

    @property
    def container_id(self) -> str:
        """Whose guest this shell logs in to: its id is ``CONTAINER.shell``."""
        return self.id.split(".", 1)[0]

    @governed
    def administer(self, port: int = 22) -> tuple[str, str]:
        """Create the client's user in the guest with the stored credentials; done once
        for given credentials (a second call with the same ones changes nothing)."""
        if self.shell is None or not self.lifecycle.is_in("started"):
            raise ShellNotOpen("the endpoint shell is not opened")
        if self.client_credentials is None:
            raise ShellNotOpen("no client SSH credentials are stored on this shell")
        if self.administered == self.client_credentials:
            return self.client_credentials
        username, password = self.client_credentials
        self.shell.administer(username, password, port)
        self.administered = self.client_credentials
        return self.client_credentials

    @governed
    def execute(self, command: str) -> tuple[str, str, int]:
        if self.shell is None or not self.lifecycle.is_in("started"):
            raise ShellNotOpen("the endpoint shell is not opened")
        return self.shell.execute(command)

    def ssh_client(self):
        return None if self.shell is None else self.shell.client

    def close(
        self, context: int | None = None, reason: str | None = None, details: dict | None = None
    ) -> Transition | None:
        """Journal ``close`` (``fail`` with a reason), close the SSH session, ``destroy``.
        Returns the transition when the shell was open (the caller fires the event)."""
        return self.end("close", context, reason, details)

    def release(self) -> None:
        shell, self.shell = self.shell, None
        if shell is not None:
            shell.close()
