"""Forwarding: a server port relayed to a guest's SSH endpoint.

`reserve_port` picks and holds a port atomically (bind + listen); `Relay` serves it on one
event-loop thread. The Forwarder actor and the seed's `ForwarderInstance` façade build on these.
"""

from anweddol_actors.forwarding.ports import PortRangeExhausted, normalize_port_range, reserve_port
from anweddol_actors.forwarding.relay import Relay, RelayStats

__all__ = ["PortRangeExhausted", "Relay", "RelayStats", "normalize_port_range", "reserve_port"]
