"""The admin channel's server side: a Unix socket beside the running engine.

Who may ask: the socket is made 0600 (owned by the server's user when one is given) in a
folder made 0750, and each peer's credentials (``SO_PEERCRED``) are checked as well, so a
socket whose mode an administrator widened still answers only root and the server's own
user. What a request may cost is bounded: its size, the wait for it, the connections
served at once. Each connection is served on a thread of its own, so a slow ``destroy``
(a guest shutting down) does not hold a ``list``; the work itself is the engine's
(``engine/admin.py``), this module only translates requests and answers.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import selectors
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anweddol_actors.actors.base import one_line
from anweddol_actors.admin.client import AdminError
from anweddol_actors.engine import admin as operations
from anweddol_actors.logs.ratelimited import RateLimitedLog

log = logging.getLogger(__name__)

# The largest request read: a command and a UUID fit in far less.
MAX_REQUEST_SIZE = 64 << 10
# The whole wait for a request, from the connection: a peer that says nothing is cut.
READ_TIMEOUT = 5.0
# Admin connections served at once; one past it is answered "busy" and closed.
MAX_CONNECTIONS = 8
# The most close() waits for the requests being served (a destroy ends a guest: its
# libvirt calls are bounded by the hypervisor layer's own timeouts).
CLOSE_BOUND = 60.0
# After the answer, how long what the peer still sends is read and dropped: a socket
# closed with unread data resets the connection, and the peer would lose the answer.
LINGER = 1.0
BUSY_LINGER = 0.05  # on the accepting thread: kept short
# Refused peers are logged, at most once per this many seconds.
LOG_INTERVAL = 5.0

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class AdminServer:
    """Serve the admin commands of ``engine_server`` (``engine.supervisor.Server``) on
    the Unix socket ``path``. ``owner``: the user name the socket is given to (the
    server's user); ``status``: extra fields for the ``status`` command."""

    def __init__(
        self,
        engine_server: Any,
        path: str,
        owner: str | None = None,
        status: Callable[[], dict] | None = None,
    ) -> None:
        self.engine = engine_server
        self.path = str(path)
        self.owner = owner
        self._status = status
        self._socket: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._workers: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._refused_log = RateLimitedLog(log, LOG_INTERVAL)
        self._commands: dict[str, tuple[Callable[..., dict], tuple[str, ...]]] = {
            "status": (self._do_status, ()),
            "list": (self._do_list, ()),
            "destroy": (self._do_destroy, ("uuid",)),
            "hosts": (self._do_hosts, ()),
            "drain": (self._do_drain, ("name",)),
            "enable": (self._do_enable, ("name",)),
            "front_ends": (self._do_front_ends, ()),
        }

    # -- start and close -------------------------------------------------------------

    def start(self) -> AdminServer:
        """Bind the socket and serve on a thread; ``AdminError`` (one line) when another
        server answers there, or the socket cannot be made."""
        uid, gid = self._owner_ids()
        self._make_folder(uid, gid)
        self._clear_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # The mode is set by the umask at bind: a chmod after it would leave a moment
            # where anyone may connect. The umask is process-wide, hence restored at once.
            previous = os.umask(0o177)
            try:
                sock.bind(self.path)
            finally:
                os.umask(previous)
            if uid is not None:
                os.chown(self.path, uid, gid)
            sock.listen(MAX_CONNECTIONS)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if os.path.exists(self.path) and stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)  # bound, then refused its owner or listen: not ours to keep
            raise AdminError(
                f"{self.path}: cannot make the admin socket: {exc.strerror or exc}"
            ) from None
        self._socket = sock
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="anweddol-admin", daemon=True)
        self._thread.start()
        log.info("admin socket: %s", self.path)
        return self

    def close(self) -> None:
        """Stop accepting, wait (bounded) for the requests being served, remove the socket."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        thread.join(timeout=5)
        deadline = time.monotonic() + CLOSE_BOUND
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.error("admin socket: a request still runs after %g s", CLOSE_BOUND)
        for sock in (self._socket, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._socket = self._wake_r = self._wake_w = None
        self._thread = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("admin socket: cannot remove %s: %s", self.path, exc)

    def __enter__(self) -> AdminServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _owner_ids(self) -> tuple[int | None, int | None]:
        if not self.owner:
            return None, None
        try:
            entry = pwd.getpwnam(self.owner)
        except KeyError:
            raise AdminError(
                f"{self.path}: no user {self.owner!r} to own the admin socket"
            ) from None
        return entry.pw_uid, entry.pw_gid

    def _make_folder(self, uid: int | None, gid: int | None) -> None:
        """The socket's folder: made 0750 (and given to the owner, who must be able to
        remove the socket once the server runs as that user) when it does not exist."""
        folder = Path(self.path).parent
        if folder.is_dir():
            return
        try:
            folder.mkdir(mode=0o750, parents=True)
            folder.chmod(0o750)  # mkdir's mode passes through the umask
            if uid is not None:
                os.chown(folder, uid, gid)
        except OSError as exc:
            raise AdminError(f"{folder}: cannot make the admin socket's folder: {exc}") from None

    def _clear_stale(self) -> None:
        """Remove a socket file nobody listens on (a server that was killed); refuse to
        take over one that answers, or a file that is not a socket."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise AdminError(f"{self.path}: exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            try:
                probe.connect(self.path)
            except (ConnectionRefusedError, FileNotFoundError):
                pass  # nobody listens: stale
            except OSError as exc:
                raise AdminError(f"{self.path}: cannot tell whether it is in use: {exc}") from None
            else:
                raise AdminError(f"{self.path}: another server answers there")
        log.info("admin socket: removing the stale %s", self.path)
        os.unlink(self.path)

    # -- serving ---------------------------------------------------------------------

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._socket:
                        self._accept()

    def _accept(self) -> None:
        try:
            conn, _ = self._socket.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # out of descriptors: the peer stays queued, retried
            log.warning("admin socket: accept failed: %s", exc)
            time.sleep(0.1)
            return
        with self._lock:
            busy = len(self._workers) >= MAX_CONNECTIONS
            if not busy:
                worker = threading.Thread(
                    target=self._serve, args=(conn,), name="anweddol-admin-request", daemon=True
                )
                self._workers.add(worker)
        if busy:
            with conn:
                conn.settimeout(BUSY_LINGER)
                self._answer(conn, {"ok": False, "error": "busy: too many admin requests"})
                _drain(conn, BUSY_LINGER)
            return
        worker.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(READ_TIMEOUT)
                self._answer(conn, self._reply(conn))
                _drain(conn, LINGER)
        except Exception:
            log.exception("admin socket: a request failed")
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())

    def _reply(self, conn: socket.socket) -> dict[str, Any]:
        pid, uid, _gid = _PEERCRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
        if uid not in (0, os.geteuid()):
            self._refused_log.warning(
                "admin socket: refused a request of uid %d (pid %d): only root and "
                "the server's user may ask (%d refused since the last line)",
                uid,
                pid,
            )
            return {"ok": False, "error": "permission denied"}
        try:
            request = json.loads(_read_request(conn))
        except _BadRequest as exc:
            return {"ok": False, "error": str(exc)}
        except ValueError:
            return {"ok": False, "error": "bad request: not a JSON line"}
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return {"ok": False, "error": "bad request: no command"}
        name = request.pop("command")
        if name not in self._commands:
            known = ", ".join(sorted(self._commands))
            return {"ok": False, "error": f"unknown command {name!r} (known: {known})"}
        routine, required = self._commands[name]
        for argument in required:
            if not isinstance(request.get(argument), str) or not request[argument]:
                return {"ok": False, "error": f"{name}: the argument {argument!r} is required"}
        try:
            return {"ok": True, "data": routine(**{key: request[key] for key in required})}
        except operations.AdminRefused as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("admin socket: %s failed", name)
            return {"ok": False, "error": f"{name} failed: {one_line(exc)}"}

    def _answer(self, conn: socket.socket, reply: dict[str, Any]) -> None:
        try:
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass  # the peer left: nobody to tell

    # -- commands --------------------------------------------------------------------

    def _do_status(self) -> dict:
        data = operations.status(self.engine.context, self.engine.listen_address)
        if self._status is not None:
            data.update(self._status())
        return data

    def _do_list(self) -> dict:
        return {"containers": operations.list_containers(self.engine.context)}

    def _do_destroy(self, uuid: str) -> dict:
        operations.destroy_container(self.engine.context, uuid)
        return {"uuid": uuid}

    def _do_hosts(self) -> dict:
        return {"hosts": operations.list_hosts(self.engine.context)}

    def _do_drain(self, name: str) -> dict:
        return {"host": operations.set_host_enabled(self.engine.context, name, False)}

    def _do_enable(self, name: str) -> dict:
        return {"host": operations.set_host_enabled(self.engine.context, name, True)}

    def _do_front_ends(self) -> dict:
        return {"front_ends": operations.list_front_ends(self.engine.context)}


class _BadRequest(AdminError):
    """A request too large, cut short or not sent in time; one line."""


def _read_request(conn: socket.socket) -> bytes:
    """One line from the peer, within ``READ_TIMEOUT`` in all and ``MAX_REQUEST_SIZE``."""
    deadline = time.monotonic() + READ_TIMEOUT
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _BadRequest("bad request: not sent in time")
        conn.settimeout(left)
        try:
            chunk = conn.recv(MAX_REQUEST_SIZE + 1 - len(data))
        except TimeoutError:
            raise _BadRequest("bad request: not sent in time") from None
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST_SIZE:
            raise _BadRequest(f"bad request: larger than {MAX_REQUEST_SIZE} bytes")
    return data.split(b"\n", 1)[0]


def _drain(conn: socket.socket, bound: float) -> None:
    """Tell the peer the answer is complete, then read and drop what it still sends until
    it closes, ``bound`` seconds or ``MAX_REQUEST_SIZE`` bytes at most."""
    deadline = time.monotonic() + bound
    dropped = 0
    try:
        conn.shutdown(socket.SHUT_WR)
        while dropped <= MAX_REQUEST_SIZE:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            conn.settimeout(left)
            chunk = conn.recv(65536)
            if not chunk:
                return
            dropped += len(chunk)
    except OSError:
        pass  # the peer left: nothing more to drop
