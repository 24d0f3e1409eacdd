"""A real SSH server on loopback (paramiko), standing in for a guest's dropbear in fast
tests: it accepts ``endpoint``/``endpoint``, answers the setup-contract probe, runs
nothing, and records each command with what it read on standard input. Its host key can
be swapped between logins, as a rebooted or replaced guest would."""

from __future__ import annotations

import socket
import threading

import paramiko


class LoopbackSSH:
    def __init__(self, *, stdin_contract: bool = True) -> None:
        self.stdin_contract = stdin_contract
        self.key: paramiko.PKey = paramiko.ECDSAKey.generate()
        self.commands: list[tuple[str, bytes]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._transports: list[paramiko.Transport] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="loopback-ssh", daemon=True)
        self._thread.start()

    def new_key(self) -> None:
        self.key = paramiko.ECDSAKey.generate()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
        for transport in self._transports:
            transport.close()
            transport.join(5)

    def __enter__(self) -> LoopbackSSH:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            transport = paramiko.Transport(sock)
            transport.add_server_key(self.key)
            self._transports.append(transport)
            try:
                transport.start_server(server=_Interface(self))
            except (paramiko.SSHException, EOFError, OSError):
                transport.close()

    def run(self, channel: paramiko.Channel, command: str) -> None:
        stdin = b""
        channel.settimeout(5)
        try:
            while chunk := channel.recv(4096):
                stdin += chunk
        except TimeoutError:
            pass
        self.commands.append((command, stdin))
        if command.startswith("grep -qxF "):
            status = 0 if self.stdin_contract else 1
        else:
            status = 0
        channel.send_exit_status(status)
        channel.close()


class _Interface(paramiko.ServerInterface):
    def __init__(self, server: LoopbackSSH) -> None:
        self.server = server

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        if (username, password) == ("endpoint", "endpoint"):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        threading.Thread(
            target=self.server.run, args=(channel, command.decode()), daemon=True
        ).start()
        return True
