"""The endpoint shell: an SSH session to a container as its ``endpoint`` user (paramiko).

The server logs in as ``endpoint`` once, right after boot, to run the image's setup script,
which creates the client's user and locks ``endpoint``. The script prints nothing on
success, so any output, or a non-zero exit, is a failure.

Two forms of the script exist. The shipped image's declares the line
``# anweddol-container-contract: password-on-stdin`` and is run as
``sudo /bin/anweddol_container_setup.sh USER PORT`` with the password on standard input, so
no process of the guest can read it in ``/proc/PID/cmdline``. A script without that line
(the original's official ISO) gets ``USER PASS PORT``, as it always did; that is logged,
since the password is then readable inside the guest while the script runs.

Host key: every boot of a live image makes a new key, so there is nothing to know in
advance. The key seen at the first login is what the caller records; a later login to the
same guest passes it as ``host_key`` and a different one is refused before the password is
sent (``HostKeyMismatch``).
"""

from __future__ import annotations

import logging
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
STDIN_CONTRACT_LINE = "# anweddol-container-contract: password-on-stdin"

log = logging.getLogger(__name__)
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


class HostKeyMismatch(EndpointConnectError):
    """The guest presented another host key than the one recorded at its first login."""

    def __init__(self, message: str, *, expected: str, seen: str):
        super().__init__(message)
        self.expected = expected
        self.seen = seen


class AdministrationError(EndpointShellError):
    """The setup script failed: non-zero exit or any output. Carries what it said."""

    def __init__(self, message: str, *, stdout: str, stderr: str, status: int):
        super().__init__(message)
        self.stdout = stdout
        self.stderr = stderr
        self.status = status


def host_key_text(key: paramiko.PKey) -> str:
    """A public host key as one ``known_hosts``-style text: ``TYPE BASE64``."""
    return f"{key.get_name()} {key.get_base64()}"


class _HostKeyCheck(paramiko.MissingHostKeyPolicy):
    # No known_hosts is ever loaded, so paramiko asks this policy about every key, during
    # the key exchange, before any password is sent. Without an expected key (a first
    # login) it accepts and remembers; with one, only that key passes. Nothing is shared
    # between shells: each guest's key is checked against its own record only.
    def __init__(self, expected: str | None) -> None:
        self.expected = expected
        self.seen: str | None = None

    def missing_host_key(self, client, hostname, key) -> None:
        self.seen = host_key_text(key)
        if self.expected is not None and self.seen != self.expected:
            raise HostKeyMismatch(
                f"{hostname} presented host key {_short(self.seen)}, not the "
                f"{_short(self.expected)} recorded at its first login",
                expected=self.expected,
                seen=self.seen,
            )


def _short(key: str) -> str:
    kind, _, blob = key.partition(" ")
    return f"{kind} …{blob[-12:]}"


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
        host_key: str | None = None,
    ) -> None:
        """``host_key``: the key recorded at this guest's first login (``TYPE BASE64``);
        any other is refused. None for a first login: the key seen is then ``host_key``."""
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.timeout = timeout
        self.host_key = host_key
        self._client: paramiko.SSHClient | None = None
        self._stdin_contract: bool | None = None

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
        check = _HostKeyCheck(self.host_key)
        client.set_missing_host_key_policy(check)
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
        except HostKeyMismatch:
            client.close()
            raise
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
        self.host_key = check.seen
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

    def execute(
        self, command: str, timeout: float | None = None, stdin: bytes | None = None
    ) -> tuple[str, str, int]:
        """Run ``command`` in the guest, ``stdin`` (then end of file) on its standard
        input; return (stdout, stderr, exit status)."""
        if not self.is_open:
            raise EndpointShellError("endpoint shell is not open")
        assert self._client is not None
        try:
            channel = self._client.get_transport().open_session(timeout=self.timeout)
            channel.settimeout(timeout if timeout is not None else self.timeout)
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin)
            # End of file at once: a command reading its input never waits for more.
            channel.shutdown_write()
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
        if self.takes_password_on_stdin():
            command = " ".join(["sudo", SETUP_SCRIPT, shlex.quote(username), str(port)])
            stdin = f"{password}\n".encode()
        else:
            command = " ".join(
                ["sudo", SETUP_SCRIPT, shlex.quote(username), shlex.quote(password), str(port)]
            )
            stdin = None
        stdout, stderr, status = self.execute(command, timeout=timeout, stdin=stdin)
        if status != 0 or stdout or stderr:
            said = " / ".join(s.strip() for s in (stdout, stderr) if s.strip()) or "no output"
            raise AdministrationError(
                f"setup script failed on {self.host}:{self.port} (exit {status}): {said}",
                stdout=stdout,
                stderr=stderr,
                status=status,
            )

    def takes_password_on_stdin(self) -> bool:
        """Whether the guest's setup script declares the stdin contract (asked once).

        A script without the declaration, or that endpoint cannot read, gets the
        original's command-line form: the image decides, and an image made for the
        original server keeps working."""
        if self._stdin_contract is None:
            _out, _err, status = self.execute(
                f"grep -qxF {shlex.quote(STDIN_CONTRACT_LINE)} {SETUP_SCRIPT}"
            )
            self._stdin_contract = status == 0
            if not self._stdin_contract:
                log.warning(
                    "%s:%s: the image's %s takes the password on its command line "
                    "(readable in the guest's /proc while it runs); images built by "
                    "anweddol_actors take it on standard input",
                    self.host,
                    self.port,
                    SETUP_SCRIPT,
                )
        return self._stdin_contract
