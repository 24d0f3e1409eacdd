"""A TCP relay: one listening socket, one target, many connections, one thread.

Theory of operation
-------------------
One event-loop thread owns every socket (the listener, each client, each target connection)
and waits on them with `selectors` (epoll on Linux); nothing busy-waits. Each accepted client
gets a *pair*: the client socket and a non-blocking connection to the target. A pair carries
two *directions* (client→target, target→client, see directions.py). A direction holds a
bounded amount of undelivered bytes (one chunk when copying, one pipe when splicing) and stops
reading its source while full, so a slow reader stops its writer and memory per connection is
bounded (backpressure; the kernel socket buffers do the queueing).
When a source reaches EOF and its bytes are delivered, the other socket is shut for writing
(half-close), and the pair is closed once both directions are done; any error or reset closes
the pair at once without touching the others. `stop()` wakes the loop through a socketpair;
the loop closes the listener and every pair (with RST, so no TIME_WAIT holds the port) and
exits. A forwarder carries SSH sessions, so every socket gets TCP_NODELAY: interactive
keystrokes must not wait on Nagle (PROTOCOL.md §4, "Latency from tiny writes").

Idle tracking: the server destroys a container once nobody has had a connection open
through its forwarder for a while, so the relay records `idle_since`, the monotonic time
the last open pair closed (or the relay started), and None while any pair is open. A pair
counts as open from accept to close, including while its target connect is pending: the
client is connected and waiting. Only the loop thread writes it (start() sets it once before
the loop exists); readers on other threads take no lock, see `idle_since`.

Limits: a forwarder faces anyone who can reach its port, and every connection it relays
reaches the guest from one address (the forwarder's), so the guest's SSH server cannot
tell a stranger from the owner: a few idle connections fill its per-source limit of
unauthenticated connections (dropbear: 5; OpenSSH: MaxStartups 10) and lock everybody out.
The relay therefore admits a new connection only while (1) fewer than `max_connections`
are open, (2) its address holds fewer than `max_connections_per_address`, and (3) when it
is not the `owner` (the address that made the CREATE), all addresses other than the
owner's together hold fewer than `max_connections_per_address`: strangers share one
address's allowance, so with that below the guest's limit they can never fill it and the
owner's connection always reaches the guest. Without an owner every address is a stranger.
A connection past a limit is accepted and closed at once (RST), before anything is
relayed or any target connection is made; refusals are counted (`stats.refused`) and
logged through `logs.RateLimitedLog`: at most once per `_REFUSAL_LOG_INTERVAL` seconds,
with the count since the last line.

Two ways to move bytes, same state machine: copy (recv_into one shared scratch buffer, then
send) and splice (socket → pipe → socket inside the kernel, `os.splice`). Splice measured
20-45% faster for bulk transfers (`python -m anweddol_actors bench --only forwarder`) but
costs two pipes (four fds, and pipe pages accounted to the user) per connection. The
default is therefore adaptive: a direction starts copying and switches to splice, for
good, once it has moved `SPLICE_AFTER` bytes, so interactive SSH sessions hold no pipes
and bulk copies go zero-copy.
A spliced direction, once woken, moves pipeful after pipeful (up to `SPLICE_ROUNDS`, see
directions.py) until its source is empty or its destination full: the relay's cost is then
nearly all the kernel's TCP work, and Python runs once per few MiB rather than per chunk.
The bound keeps one bulk transfer from holding the thread while others wait.

Connection setup: the target is on loopback (QEMU's forwarded port on this host), where the
handshake completes inside connect() although non-blocking connect() says EINPROGRESS; the
relay checks (getpeername) and relays at once, without a loop round waiting for
writability. A target that really is still connecting gets the usual deadline.

Why one loop thread and not two blocking threads per connection: the benchmark measures both.
Threads set up a connection ~2x slower (a thread start per connection) and cost two threads
per SSH session for the life of the container; on a 2-core host they do move more bytes with
8 parallel streams (kernel copies run on both cores), but both designs are far above what an
SSH session can carry, and only the loop keeps stop() simple: one wake-up closes everything.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import logging
import os
import selectors
import socket
import struct
import threading
import time

from anweddol_actors.forwarding.directions import (
    CHUNK_SIZE,
    HAVE_SPLICE,
    CopyDirection,
    SpliceDirection,
)
from anweddol_actors.logs.ratelimited import RateLimitedLog

__all__ = ["Relay", "RelayStats", "SPLICE_AFTER"]

log = logging.getLogger(__name__)

# Bytes a direction copies before it switches to splice (adaptive mode, the default).
SPLICE_AFTER = 4 * 1024 * 1024

# How many clients one wake-up of the listener may accept before serving others again.
_ACCEPT_BATCH = 64

# After EMFILE/ENFILE the listener stays readable; pause accepting instead of spinning.
_ACCEPT_PAUSE = 0.1
_ACCEPT_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# A flood of refused connections must not become a flood of log lines.
_REFUSAL_LOG_INTERVAL = 5.0

_LINGER_ABORT = struct.pack("ii", 1, 0)

_R = selectors.EVENT_READ
_W = selectors.EVENT_WRITE


class RelayStats:
    """Byte counters, written by the loop thread only (reads from other threads are safe)."""

    __slots__ = ("bytes_in", "bytes_out", "accepted", "connect_failures", "refused")

    def __init__(self) -> None:
        self.bytes_in = 0  # client → target, bytes delivered to the target
        self.bytes_out = 0  # target → client, bytes delivered to clients
        self.accepted = 0  # admitted and relayed
        self.connect_failures = 0
        self.refused = 0  # accepted and closed at once: past a connection limit


class _Pair:
    """One client and its connection to the target."""

    __slots__ = ("client", "target", "c2t", "t2c", "connecting", "masks", "peer", "address")

    def __init__(
        self, client: socket.socket, target: socket.socket, peer: object, splice: bool
    ) -> None:
        self.client = client
        self.target = target
        self.peer = peer
        self.address = peer_address(peer)
        self.connecting = True
        direction = SpliceDirection if splice else CopyDirection
        self.c2t: CopyDirection | SpliceDirection = direction(client, target)
        try:
            self.t2c: CopyDirection | SpliceDirection = direction(target, client)
        except BaseException:
            self.c2t.close()
            raise
        # Events each socket is registered for in the selector (0 = not registered).
        self.masks: dict[socket.socket, int] = {client: 0, target: 0}

    def wanted(self) -> tuple[int, int]:
        if self.connecting:
            return 0, _W
        c2t, t2c = self.c2t, self.t2c
        client = (_R if c2t.wants_read else 0) | (_W if t2c.wants_write else 0)
        target = (_R if t2c.wants_read else 0) | (_W if c2t.wants_write else 0)
        return client, target

    def half_close(self) -> None:
        """Shut a destination for writing once its source hit EOF and all was delivered."""
        for d in (self.c2t, self.t2c):
            if d.eof and not d.wants_write and not d.shut:
                d.shut = True
                d.dst.shutdown(socket.SHUT_WR)

    @property
    def finished(self) -> bool:
        return self.c2t.shut and self.t2c.shut

    def upgrade(self) -> None:
        """Switch a busy copying direction to splice, between chunks (nothing pending)."""
        for name in ("c2t", "t2c"):
            old = getattr(self, name)
            if (
                type(old) is CopyDirection
                and old.moved >= SPLICE_AFTER
                and not old.pending
                and not old.eof
            ):
                try:
                    new = SpliceDirection(old.src, old.dst)
                except OSError:
                    old.moved = -(1 << 62)  # out of fds: keep copying, do not retry
                    continue
                new.eof, new.shut = old.eof, old.shut
                setattr(self, name, new)


class Relay:
    """Relay every connection accepted on `listen_socket` to `target`, on one thread.

    The relay owns `listen_socket` (bound and listening, e.g. from `reserve_port`) and
    closes it on `stop()`, after which the port is free again.
    """

    def __init__(
        self,
        listen_socket: socket.socket,
        target: tuple[str, int],
        *,
        connect_timeout: float = 5.0,
        name: str | None = None,
        splice: bool | None = None,
        max_connections: int | None = None,
        max_connections_per_address: int | None = None,
        owner: str | None = None,
    ) -> None:
        """`splice`: None (default) adapts per direction, True always, False never.
        `max_connections`, `max_connections_per_address`: None for no limit; `owner`: the
        address whose connections are not counted as strangers' (module docstring)."""
        for key, limit in (
            ("max_connections", max_connections),
            ("max_connections_per_address", max_connections_per_address),
        ):
            if limit is not None and (
                isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
            ):
                raise ValueError(f"{key} must be a positive integer or None: {limit!r}")
        self._max_connections = max_connections
        self._max_per_address = max_connections_per_address
        self._owner = normalize_address(owner) if owner else None
        self._listener = listen_socket
        self._port: int = listen_socket.getsockname()[1]
        self._target = (target[0], int(target[1]))
        # Resolve once, here: a name lookup inside the loop would stall every connection.
        family, _, _, _, address = socket.getaddrinfo(
            self._target[0], self._target[1], type=socket.SOCK_STREAM
        )[0]
        self._target_family = family
        self._target_address = address
        self._connect_timeout = connect_timeout
        self._splice = bool(splice) and HAVE_SPLICE
        self._adaptive = splice is None and HAVE_SPLICE
        self.name = name or f"relay-{self._port}"
        self.stats = RelayStats()

        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._pairs: set[_Pair] = set()
        # Open connections per client address, and those of every address but the owner's.
        self._per_address: dict[str, int] = {}
        self._strangers = 0
        self._refusal_log = RateLimitedLog(log, _REFUSAL_LOG_INTERVAL)
        self._deadlines: list[tuple[float, int, _Pair]] = []
        self._seq = itertools.count()
        self._accept_paused_until: float | None = None
        self._sel: selectors.BaseSelector | None = None
        self._scratch = memoryview(bytearray(0 if self._splice else CHUNK_SIZE))
        self.error: BaseException | None = None  # what killed the loop, if anything did
        # A relay that never ran has had no connection either: idle from its creation,
        # until start() restarts the clock.
        self._idle_since: float | None = time.monotonic()

    # -- public API ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def target(self) -> tuple[str, int]:
        return self._target

    @property
    def is_running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stopping

    @property
    def connection_count(self) -> int:
        """Client connections open now (from accept to close, target connect included).

        Safe from any thread without the lock: len() of a set is one atomic read, so a
        reader sees the count before or after the loop's change, never a torn value.
        """
        return len(self._pairs)

    @property
    def owner(self) -> str | None:
        return self._owner

    def connections_from(self, address: str) -> int:
        """Client connections open now from `address` (same caveats as connection_count)."""
        return self._per_address.get(normalize_address(address), 0)

    @property
    def idle_since(self) -> float | None:
        """`time.monotonic()` since when no connection has been open, None while one is.

        Set at start(), cleared when a connection opens, set again when the last open one
        closes (or when stop() closes them). Safe from any thread without the lock: only
        the loop thread writes it (start() before the loop exists), and rebinding one
        attribute is atomic, so a reader gets the old or the new value, never a mix.
        Compare it with `time.monotonic()`, not `time.time()`. Decide on it alone, not with
        `connection_count`: the two are not updated as one, so a pair read together may
        straddle a change.
        """
        return self._idle_since

    @property
    def bytes_in(self) -> int:
        return self.stats.bytes_in

    @property
    def bytes_out(self) -> int:
        return self.stats.bytes_out

    @property
    def mode(self) -> str:
        """ "copy", "splice" or "adaptive" (copy, then splice for bulk)."""
        return "adaptive" if self._adaptive else "splice" if self._splice else "copy"

    def start(self) -> None:
        """Start the loop thread. Raises RuntimeError if started or stopped before."""
        with self._lock:
            if self._thread is not None or self._stopping:
                raise RuntimeError(f"{self.name}: relay already started or stopped")
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._listener.setblocking(False)
            self._sel = selectors.DefaultSelector()
            self._sel.register(self._wake_r, _R, None)
            self._sel.register(self._listener, _R, None)
            # The idle clock runs from start (the container's CREATE), not construction.
            self._idle_since = time.monotonic()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        log.debug("%s: relaying port %d to %s:%d", self.name, self._port, *self._target)

    def stop(self, timeout: float | None = None) -> None:
        """Close the listener and every connection; join the loop. Idempotent, any thread."""
        with self._lock:
            self._stopping = True
            thread = self._thread
            if thread is None:
                self._close_listener()
                return
            if self._wake_w is not None:
                try:
                    self._wake_w.send(b"\0")
                except OSError:
                    pass  # buffer full (already woken) or loop already gone
        if thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> Relay:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return (
            f"<Relay {self.name} :{self._port} -> {self._target[0]}:{self._target[1]} "
            f"{state} connections={self.connection_count}>"
        )

    # -- loop --------------------------------------------------------------------------------

    def _run(self) -> None:
        sel = self._sel
        assert sel is not None
        try:
            while not self._stopping:
                for key, events in sel.select(self._next_timeout()):
                    data = key.data
                    if data is None:
                        if key.fileobj is self._listener:
                            self._accept()
                        # else: the wake socket; the loop condition does the rest
                    else:
                        self._on_pair_event(data, key.fileobj, events)
                self._expire()
        except BaseException as exc:  # the loop must never die with sockets left open
            self.error = exc
            log.exception("%s: relay loop failed", self.name)
        finally:
            self._shutdown()

    def _next_timeout(self) -> float | None:
        deadlines = [d for d in (self._accept_paused_until,) if d is not None]
        while self._deadlines and not self._deadlines[0][2].connecting:
            heapq.heappop(self._deadlines)
        if self._deadlines:
            deadlines.append(self._deadlines[0][0])
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _expire(self) -> None:
        now = time.monotonic()
        if self._accept_paused_until is not None and now >= self._accept_paused_until:
            self._accept_paused_until = None
            assert self._sel is not None
            self._sel.register(self._listener, _R, None)
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, pair = heapq.heappop(self._deadlines)
            if pair.connecting and pair in self._pairs:
                log.info("%s: connect to target timed out for %s", self.name, pair.peer)
                self.stats.connect_failures += 1
                self._close_pair(pair, abort=True)

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                client, peer = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_RESOURCE_ERRNOS:
                    log.warning("%s: accept paused: %s", self.name, exc)
                    assert self._sel is not None
                    self._sel.unregister(self._listener)
                    self._accept_paused_until = time.monotonic() + _ACCEPT_PAUSE
                    return
                # ECONNABORTED and friends concern that one client only.
                log.debug("%s: accept failed: %s", self.name, exc)
                continue
            refusal = self._refusal(peer_address(peer))
            if refusal is not None:
                self._refuse(client, peer, refusal)
                continue
            self.stats.accepted += 1
            self._open_pair(client, peer)

    def _refusal(self, address: str) -> str | None:
        """Why a new connection from `address` is refused now, or None to admit it."""
        if self._max_connections is not None and len(self._pairs) >= self._max_connections:
            return f"{self._max_connections} connections open"
        per_address = self._max_per_address
        if per_address is None:
            return None
        if self._per_address.get(address, 0) >= per_address:
            return f"{per_address} connections open from {address}"
        if address != self._owner and self._strangers >= per_address:
            return f"{per_address} connections open from addresses other than the owner's"
        return None

    def _refuse(self, client: socket.socket, peer: object, reason: str) -> None:
        # Counted first: whoever sees the reset may read the count at once.
        self.stats.refused += 1
        # Closed before any byte is relayed or any target connection made.
        _abort(client)
        self._refusal_log.warning(
            "%s: refused a connection from %s (%s); refusals since the last such line: %d",
            self.name,
            peer_address(peer),
            reason,
        )

    def _open_pair(self, client: socket.socket, peer: object) -> None:
        target = None
        try:
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            target = socket.socket(self._target_family, socket.SOCK_STREAM)
            target.setblocking(False)
            target.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = target.connect_ex(self._target_address)
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, os.strerror(err))
            pair = _Pair(client, target, peer, self._splice)
            # On loopback (the guest's forwarded port is QEMU's socket on the host) the
            # handshake completes inside connect() even though it says EINPROGRESS: relay
            # at once instead of spending a loop round waiting for writability.
            pair.connecting = err != 0 and not _connected(target)
        except OSError as exc:
            log.info("%s: cannot reach target for %s: %s", self.name, peer, exc)
            self.stats.connect_failures += 1
            _abort(client)
            if target is not None:
                target.close()
            return
        self._pairs.add(pair)
        self._count(pair.address, +1)
        self._idle_since = None
        if pair.connecting:
            deadline = time.monotonic() + self._connect_timeout
            heapq.heappush(self._deadlines, (deadline, next(self._seq), pair))
        self._update_interest(pair)

    def _on_pair_event(self, pair: _Pair, sock: object, events: int) -> None:
        if pair not in self._pairs:
            return  # closed by an earlier event of the same batch
        stats = self.stats
        try:
            if pair.connecting:
                err = pair.target.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    stats.connect_failures += 1
                    raise OSError(err, os.strerror(err))
                pair.connecting = False
            elif sock is pair.client:
                if events & _W and pair.t2c.wants_write:
                    stats.bytes_out += pair.t2c.pump_out()
                if events & _R and pair.c2t.wants_read:
                    stats.bytes_in += pair.c2t.pump_in(self._scratch)
            else:
                if events & _W and pair.c2t.wants_write:
                    stats.bytes_in += pair.c2t.pump_out()
                if events & _R and pair.t2c.wants_read:
                    stats.bytes_out += pair.t2c.pump_in(self._scratch)
            pair.half_close()
            if self._adaptive:
                pair.upgrade()
        except OSError as exc:
            log.debug("%s: closing connection from %s: %s", self.name, pair.peer, exc)
            self._close_pair(pair, abort=True)
            return
        if pair.finished:
            self._close_pair(pair, abort=False)
        else:
            self._update_interest(pair)

    def _count(self, address: str, delta: int) -> None:
        count = self._per_address.get(address, 0) + delta
        if count:
            self._per_address[address] = count
        else:
            del self._per_address[address]
        if address != self._owner:
            self._strangers += delta

    def _update_interest(self, pair: _Pair) -> None:
        sel = self._sel
        assert sel is not None
        for sock, new in zip((pair.client, pair.target), pair.wanted(), strict=True):
            old = pair.masks[sock]
            if new == old:
                continue
            if old == 0:
                sel.register(sock, new, pair)
            elif new == 0:
                sel.unregister(sock)
            else:
                sel.modify(sock, new, pair)
            pair.masks[sock] = new

    def _close_pair(self, pair: _Pair, *, abort: bool) -> None:
        sel = self._sel
        assert sel is not None
        if pair in self._pairs:
            self._pairs.discard(pair)
            self._count(pair.address, -1)
        if not self._pairs and self._idle_since is None:
            self._idle_since = time.monotonic()
        pair.connecting = False  # lets _next_timeout drop its connect deadline
        for sock, mask in pair.masks.items():
            if mask:
                sel.unregister(sock)
            pair.masks[sock] = 0
        pair.c2t.close()
        pair.t2c.close()
        if abort:
            # RST rather than FIN: the peer learns at once that the session is gone, and the
            # listening port keeps no TIME_WAIT entry, so it is free as soon as we stop.
            _abort(pair.client)
            _abort(pair.target)
        else:
            pair.client.close()
            pair.target.close()

    def _shutdown(self) -> None:
        for pair in list(self._pairs):
            try:
                self._close_pair(pair, abort=True)
            except Exception:  # keep closing the others
                log.exception("%s: error closing a connection", self.name)
        self._deadlines.clear()
        with self._lock:
            self._stopping = True
            self._close_listener()
            if self._sel is not None:
                self._sel.close()
            for sock in (self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            self._wake_r = self._wake_w = None
        log.debug("%s: stopped (in=%d out=%d)", self.name, self.bytes_in, self.bytes_out)

    def _close_listener(self) -> None:
        if not self._closed:
            self._closed = True
            self._listener.close()


def normalize_address(address: str) -> str:
    """An IPv4 client seen through an IPv6 socket (``::ffff:a.b.c.d``) is ``a.b.c.d``."""
    return address[7:] if address.lower().startswith("::ffff:") and "." in address else address


def peer_address(peer: object) -> str:
    """The address part of what accept() returned (a tuple for IP; anything else as is)."""
    if isinstance(peer, tuple) and peer:
        return normalize_address(str(peer[0]))
    return str(peer)


def _connected(sock: socket.socket) -> bool:
    """Whether a non-blocking connect has completed (getpeername() answers only then)."""
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def _abort(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)
    except OSError:
        pass  # already reset by the peer: a plain close is just as abrupt
    sock.close()
