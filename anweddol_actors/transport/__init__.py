"""Sockets: the listener that accepts clients, and the channel that runs the protocol over
one client's socket. The sans-IO protocol itself lives in :mod:`anweddol_actors.protocol`."""

from anweddol_actors.transport.channel import ClientChannel, RequestDeadlinePassed, client_id_for
from anweddol_actors.transport.limits import ConnectionLimits
from anweddol_actors.transport.listener import Listener

__all__ = [
    "ClientChannel",
    "ConnectionLimits",
    "Listener",
    "RequestDeadlinePassed",
    "client_id_for",
]
