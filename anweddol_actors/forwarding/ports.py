"""Atomic reservation of a server port for a forwarder.

The deployed server checked one random port for bindability and then used a different one
(PROTOCOL.md §4, "Port choice"). Here a port is reserved by binding *and listening* on it:
the returned socket *is* the reservation, so no other process or thread can take the port
between the choice and its use.
"""

from __future__ import annotations

import errno
import random
import socket
from collections.abc import Iterable

from anweddol_actors.errors import AnweddolError

__all__ = ["PortRangeExhausted", "PortRange", "normalize_port_range", "reserve_port"]

PortRange = range | tuple[int, int] | Iterable[int]

# Errors meaning "this port is not available to us": try the next one. EACCES is a
# privileged port (< 1024) for an unprivileged server. Anything else (EADDRNOTAVAIL: the
# bind address is not ours) would fail for every port, so it is raised at once.
_TAKEN_ERRNOS = frozenset({errno.EADDRINUSE, errno.EACCES})

_BACKLOG = 128


class PortRangeExhausted(AnweddolError, RuntimeError):
    """Every port of the configured range is already taken."""

    def __init__(self, port_range: range, bind_address: str) -> None:
        self.port_range = port_range
        self.bind_address = bind_address
        where = bind_address or "*"
        super().__init__(
            f"no free port in range {port_range.start}-{port_range.stop - 1} "
            f"({len(port_range)} ports) on {where}"
        )


def normalize_port_range(port_range: PortRange) -> range:
    """Return `port_range` as a validated `range`.

    Accepts a `range` (the seed's ``range(10000, 15000)``), a ``(first, last)`` pair with
    both ends included (the configuration's ``port_range: [first, last]``), or any other
    iterable of ports (the seed's "range | list"), which must form one contiguous run.
    """
    if isinstance(port_range, tuple) and len(port_range) == 2:
        first, last = port_range
        if not (isinstance(first, int) and isinstance(last, int)):
            raise TypeError(f"port range bounds must be integers, got {port_range!r}")
        result = range(first, last + 1)
    elif isinstance(port_range, range):
        result = port_range
    else:
        ports = sorted(set(port_range))
        if ports and ports != list(range(ports[0], ports[-1] + 1)):
            raise ValueError(f"port list must be contiguous, got {ports[:5]}...")
        result = range(ports[0], ports[-1] + 1) if ports else range(0)
    if len(result) == 0:
        raise ValueError(f"port range is empty: {port_range!r}")
    if min(result) < 1 or max(result) > 65535:
        raise ValueError(f"port range must lie within 1..65535, got {port_range!r}")
    return result


def _family_for(bind_address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in bind_address else socket.AF_INET


def reserve_port(port_range: PortRange, bind_address: str = "") -> socket.socket:
    """Bind and listen on a free port of `port_range`, tried in random order.

    Returns the listening socket (blocking mode, close-on-exec); its port is
    ``sock.getsockname()[1]``. Closing the socket releases the reservation.
    Raises `PortRangeExhausted` when every port is taken, `ValueError`/`TypeError`
    for an invalid range, and `OSError` for any other failure (no socket is leaked).
    """
    ports = normalize_port_range(port_range)
    family = _family_for(bind_address)
    # Random order spreads concurrent reservers over the range, so they rarely collide;
    # a collision is harmless anyway (the loser's bind or listen fails and it moves on).
    for port in random.sample(ports, len(ports)):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # SO_REUSEADDR lets us bind a port whose previous connections linger in
            # TIME_WAIT (a forwarder that just stopped, whose client closed last).
            # It is safe on Linux for listening sockets: the kernel still refuses a bind
            # (and a listen) on a port where *any* socket is in LISTEN state, reuse flag or
            # not, so it never lets two listeners share a port (that is SO_REUSEPORT, which
            # we must never set). One Linux subtlety: two sockets that both set
            # SO_REUSEADDR may both *bind* the same port while neither listens yet, and then
            # the second listen() fails with EADDRINUSE. The reservation is therefore made
            # by bind+listen together, and an EADDRINUSE from listen() means "taken" too.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((bind_address, port))
            sock.listen(_BACKLOG)
        except OSError as exc:
            sock.close()
            if exc.errno in _TAKEN_ERRNOS:
                continue
            raise
        except BaseException:
            sock.close()
            raise
        return sock
    raise PortRangeExhausted(ports, bind_address)
