"""The Anweddol wire protocol v1 (PROTOCOL.md), sans-IO in the manner of h11.

Nothing in this package touches sockets, threads or clocks: the caller feeds bytes in,
takes events and bytes out, and owns the I/O and the timeouts.
"""

from anweddol_actors.protocol.connection import (
    DEFAULT_MAX_KEY_LENGTH,
    DEFAULT_MAX_MESSAGE_SIZE,
    ClientConnection,
    ServerConnection,
)
from anweddol_actors.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from anweddol_actors.protocol.events import (
    NEED_DATA,
    ConnectionClosed,
    Event,
    HandshakeComplete,
    MessageSent,
    RequestReceived,
    ResponseReceived,
)

__all__ = [
    "DEFAULT_MAX_KEY_LENGTH",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "NEED_DATA",
    "ClientConnection",
    "ConnectionClosed",
    "Event",
    "HandshakeComplete",
    "LocalProtocolError",
    "MessageSent",
    "ProtocolError",
    "RemoteProtocolError",
    "RequestReceived",
    "ResponseReceived",
    "ServerConnection",
]
