"""Looking at a container from outside, as its client would: an SSH login through its
forwarded port, a refused port, the ports some process listens on. Shared by the
end-to-end tests and the soak (benchmarks/soak.py)."""

from __future__ import annotations

import os
import socket

import paramiko

LOOPBACK = "127.0.0.1"


def ssh_connect(port: int, username: str, password: str) -> paramiko.SSHClient:
    """A logged-in SSH client (the caller closes it); raises on any failure."""
    ssh = paramiko.SSHClient()
    # The guest's host key is new at every boot (IMAGE-NOTES.md): nothing to pin here.
    ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        ssh.connect(
            LOOPBACK,
            port=port,
            username=username,
            password=password,
            allow_agent=False,
            look_for_keys=False,
            timeout=30,
            banner_timeout=30,
            auth_timeout=30,
        )
    except BaseException:
        ssh.close()
        raise
    return ssh


def ssh_run(port: int, username: str, password: str, command: str) -> str:
    ssh = ssh_connect(port, username, password)
    try:
        _, stdout, _ = ssh.exec_command(command, timeout=30)
        return stdout.read().decode().strip()
    finally:
        ssh.close()


def refuses(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def login_fails(port: int, username: str, password: str) -> bool:
    try:
        ssh_run(port, username, password, "true")
    except (paramiko.SSHException, OSError):
        return True
    return False


def listening_ports(first: int, last: int, pid: int | None = None) -> set[int]:
    """TCP ports in ``first..last`` some process listens on (IPv4), from /proc.

    With ``pid``, only the ports that process listens on: a test run holds other
    listeners in the kernel's ephemeral range (a session's PostgreSQL server, say),
    and those are not the server's.
    """
    owned = _socket_inodes(pid) if pid is not None else None
    ports = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            port = int(fields[1].split(":")[1], 16)
            if fields[3] == "0A" and first <= port <= last:  # 0A: LISTEN
                if owned is None or fields[9] in owned:
                    ports.add(port)
    return ports


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    folder = f"/proc/{pid}/fd"
    for name in os.listdir(folder):
        try:
            target = os.readlink(f"{folder}/{name}")
        except FileNotFoundError:  # closed since the listing
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes
