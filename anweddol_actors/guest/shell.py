"""The endpoint shell: an SSH session to a container as its ``endpoint`` user (paramiko).

The server logs in as ``endpoint`` once, right after boot, to run the image's setup script
(``sudo /bin/anweddol_container_setup.sh USER PASS PORT``), which creates the client's user
and locks ``endpoint``. The script prints nothing on success, so any output, or a non-zero
exit, is a failure.
"""

from __future__ import annotations

import re
import secrets
import shlex
import string
import threading

import paramiko

from anweddol_actors.errors import AnweddolError

ENDPOINT_USERNAME = "endpoint"
ENDPOINT_PASSWORD = "endpoint"
ENDPOINT_LISTEN_PORT = 22
SETUP_SCRIPT = "/bin/anweddol_container_setup.sh"
# dropbear refuses passwords longer than 100 characters at login (IMAGE-NOTES.md): the
# original's 120 would give the client a password that never works.
MAX_PASSWORD_LENGTH = 100
DEFAULT_PASSWORD_LENGTH = 100
USERNAME_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,31}")
PASSWORD_PATTERN = re.compile(rf"[A-Za-z0-9]{{1,{MAX_PASSWORD_LENGTH}}}")
_PASSWORD_ALPHABET = string.ascii_letters + string.digits


class EndpointShellError(AnweddolError, RuntimeError):
    """The endpoint shell could not do what was asked."""


class EndpointConnectError(EndpointShellError):
    """No SSH session: unreachable, refused, timed out, or not an SSH server."""


class EndpointAuthError(EndpointConnectError):
    """The guest refused the endpoint credentials (wrong password, or already locked)."""


class AdministrationError(EndpointShellError):
    """The setup script failed: non-zero exit or any output. Carries what it said."""

    def __init__(self, message: str, *, stdout: str, stderr: str, status: int):
        super().__init__(message)
        self.stdout = stdout
        self.stderr = stderr
        self.status = status


class _AcceptAnyHostKey(paramiko.MissingHostKeyPolicy):
    # Every boot generates a new host key: pinning would refuse the next container.
    # Remembering nothing also keeps one shell's key from leaking into another's check.
    def missing_host_key(self, client, hostname, key) -> None:
        return None


def generate_credentials(password_length: int = DEFAULT_PASSWORD_LENGTH) -> tuple[str, str]:
    """A fresh client account: ``user_NNNNN`` and a random alphanumeric password."""
    if not isinstance(password_length, int) or password_length < 1:
        raise ValueError(f"password_length must be a positive integer: {password_length!r}")
    if password_length > MAX_PASSWORD_LENGTH:
        raise ValueError(
            f"password_length {password_length} > {MAX_PASSWORD_LENGTH}: dropbear (the "
            "container's SSH server) refuses longer passwords at login"
        )
    username = f"user_{10000 + secrets.randbelow(90000)}"
    password = "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(password_length))
    return username, password


def validate_account(username: str, password: str, port: int) -> None:
    """Refuse, before anything reaches the guest, what the setup script would refuse."""
    if not isinstance(username, str) or not USERNAME_PATTERN.fullmatch(username):
        raise ValueError(f"invalid username {username!r}")
    if username in (ENDPOINT_USERNAME, "root"):
        raise ValueError(f"reserved username {username!r}")
    if not isinstance(password, str) or not PASSWORD_PATTERN.fullmatch(password):
        raise ValueError(f"password must be 1..{MAX_PASSWORD_LENGTH} characters [A-Za-z0-9]")
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"invalid port {port!r}")


class EndpointShell:
    """An SSH session as the endpoint user. Use ``open()``/``close()`` or ``with``."""

    def __init__(
        self,
        host: str,
        port: int = ENDPOINT_LISTEN_PORT,
        username: str = ENDPOINT_USERNAME,
        password: str = ENDPOINT_PASSWORD,
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.timeout = timeout
        self._client: paramiko.SSHClient | None = None

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<EndpointShell {self.username}@{self.host}:{self.port} {state}>"

    @property
    def is_open(self) -> bool:
        if self._client is None:
            return False
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    @property
    def client(self) -> paramiko.SSHClient | None:
        """The paramiko client while open (the seed's ``getSSHClient()``)."""
        return self._client

    def open(self) -> None:
        if self.is_open:
            raise EndpointShellError("endpoint shell is already open")
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_AcceptAnyHostKey())
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.AuthenticationException as exc:
            client.close()
            raise EndpointAuthError(
                f"{self.host}:{self.port} refused the credentials of {self.username!r}: {exc}"
            ) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            raise EndpointConnectError(
                f"cannot open SSH session to {self.host}:{self.port}: {exc or type(exc).__name__}"
            ) from exc
        self._client = client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> EndpointShell:
        if not self.is_open:
            self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def execute(self, command: str, timeout: float | None = None) -> tuple[str, str, int]:
        """Run ``command`` in the guest; return (stdout, stderr, exit status)."""
        if not self.is_open:
            raise EndpointShellError("endpoint shell is not open")
        assert self._client is not None
        try:
            channel = self._client.get_transport().open_session(timeout=self.timeout)
            channel.settimeout(timeout if timeout is not None else self.timeout)
            channel.exec_command(command)
            # stderr is drained on its own thread: reading one stream to its end while the
            # other fills its window would stall both sides.
            stderr_chunks: list[bytes] = []
            reader = threading.Thread(
                target=lambda: stderr_chunks.append(channel.makefile_stderr("rb").read()),
                daemon=True,
            )
            reader.start()
            stdout = channel.makefile("rb").read()
            reader.join()
            status = channel.recv_exit_status()
            channel.close()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise EndpointShellError(f"command failed on {self.host}:{self.port}: {exc}") from exc
        return (
            stdout.decode(errors="replace"),
            b"".join(stderr_chunks).decode(errors="replace"),
            status,
        )

    def administer(
        self, username: str, password: str, port: int = ENDPOINT_LISTEN_PORT, timeout: float = 30.0
    ) -> None:
        """Create the client's account through the setup script (endpoint gets locked).

        Raises ValueError for arguments the script would refuse, AdministrationError when
        the script exits non-zero or prints anything.
        """
        validate_account(username, password, port)
        command = " ".join(
            ["sudo", SETUP_SCRIPT, shlex.quote(username), shlex.quote(password), str(port)]
        )
        stdout, stderr, status = self.execute(command, timeout=timeout)
        if status != 0 or stdout or stderr:
            said = " / ".join(s.strip() for s in (stdout, stderr) if s.strip()) or "no output"
            raise AdministrationError(
                f"setup script failed on {self.host}:{self.port} (exit {status}): {said}",
                stdout=stdout,
                stderr=stderr,
                status=status,
            )
