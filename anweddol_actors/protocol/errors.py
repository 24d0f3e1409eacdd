"""Protocol errors, split as in h11: who broke the rules decides what to do next.

A :class:`RemoteProtocolError` means the peer misbehaved: close the connection (after
sending whatever refusal byte is already queued). A :class:`LocalProtocolError` means our
own code misused the connection: a bug.
"""

from __future__ import annotations

from anweddol_actors.errors import AnweddolError

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(AnweddolError):
    """Base of every error raised by :mod:`anweddol_actors.protocol`."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow, or went away too early."""


class LocalProtocolError(ProtocolError):
    """This side called the connection in a way the protocol does not allow."""
