"""Sockets: the listener that accepts clients, and the channel that runs the protocol over
one client's socket; and the channel of one HTTP request (the web front end reads it, the
engine serves it like a TCP client). The sans-IO protocol itself lives in
:mod:`anweddol_actors.protocol`."""

from anweddol_actors.transport.channel import (
    ChannelClosed,
    ClientChannel,
    RequestDeadlinePassed,
    client_id_for,
)
from anweddol_actors.transport.http_channel import HttpChannel
from anweddol_actors.transport.limits import ConnectionLimits
from anweddol_actors.transport.listener import Listener

__all__ = [
    "ChannelClosed",
    "ClientChannel",
    "HttpChannel",
    "ConnectionLimits",
    "Listener",
    "RequestDeadlinePassed",
    "client_id_for",
]
