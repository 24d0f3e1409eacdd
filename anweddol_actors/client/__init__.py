"""A client of the Anweddol wire protocol (blocking, one connection per request)."""

from anweddol_actors.client.blocking import (
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    Client,
    ClientConnectionError,
    ClientError,
    ClientProtocolError,
    ClientTimeout,
    InvalidResponse,
)

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "Client",
    "ClientConnectionError",
    "ClientError",
    "ClientProtocolError",
    "ClientTimeout",
    "InvalidResponse",
]
