"""The admin channel's client side: one request, one answer, every wait bounded."""

from __future__ import annotations

import json
import socket
from typing import Any

from anweddol_actors.errors import AnweddolError

# The most an answer may weigh: a list of every live container stays far below it.
MAX_ANSWER_SIZE = 16 << 20


class AdminError(AnweddolError):
    """The running server could not be asked, or refused the request; one line."""


def ask(path: str, command: str, timeout: float = 10.0, **arguments: Any) -> dict[str, Any]:
    """Send ``command`` to the server listening on the Unix socket ``path``; its ``data``.

    Raises ``AdminError`` when nothing listens there, the wait passes ``timeout``
    seconds, or the server answers ``ok: false``.
    """
    request = json.dumps({"command": command, **arguments}).encode() + b"\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(request)
            answer = _read_line(sock)
    except FileNotFoundError:
        raise AdminError(f"{path}: no such socket (is the server running?)") from None
    except ConnectionRefusedError:
        raise AdminError(f"{path}: nothing listens there (is the server running?)") from None
    except PermissionError:
        raise AdminError(f"{path}: permission denied (run as root or the server's user)") from None
    except TimeoutError:
        raise AdminError(f"{path}: no answer within {timeout:g} s") from None
    except OSError as exc:
        raise AdminError(f"{path}: {exc.strerror or exc}") from None
    try:
        reply = json.loads(answer)
    except ValueError:
        raise AdminError(f"{path}: the server's answer is not JSON") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise AdminError(f"{path}: the server's answer has no 'ok'")
    if not reply["ok"]:
        raise AdminError(str(reply.get("error") or "refused"))
    data = reply.get("data")
    return data if isinstance(data, dict) else {}


def _read_line(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER_SIZE:
            raise AdminError("the server's answer is too large")
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks)
