"""Events produced by :meth:`next_event` of the protocol connections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "NEED_DATA",
    "ConnectionClosed",
    "Event",
    "HandshakeComplete",
    "MessageSent",
    "RequestReceived",
    "ResponseReceived",
]


class _NeedData:
    """Sentinel: feed more bytes (or wait for the local side to act) before the next event."""

    _instance: _NeedData | None = None

    def __new__(cls) -> _NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"

    def __reduce__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


class Event:
    """Base class of every protocol event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class HandshakeComplete(Event):
    """The key exchange is over; both sides hold the session key and IV.

    ``peer_public_key_pem`` is the PEM the peer sent (steps 3 or 7); ``peer_key_size`` its
    size in bits.
    """

    peer_public_key_pem: bytes
    peer_key_size: int


@dataclass(frozen=True, slots=True)
class RequestReceived(Event):
    """Server side: the request arrived.

    ``payload`` is the decoded JSON value (of any JSON type: validating it is the caller's
    job), or None when the body is not UTF-8 JSON; ``error`` then says why. Either way the
    connection can still send a response.
    """

    payload: Any
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseReceived(Event):
    """Client side: the response arrived (same conventions as :class:`RequestReceived`)."""

    payload: Any
    error: str | None = None


@dataclass(frozen=True, slots=True)
class MessageSent(Event):
    """The peer accepted our length frame and the whole body is now queued for sending.

    ``size`` is the announced length: the encrypted body plus the 16-byte next IV.
    """

    size: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The peer closed its side after the exchange ended normally."""
