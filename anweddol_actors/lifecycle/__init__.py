"""Entities' lifecycles: the machines as data, and the journalled machine that runs them."""

from anweddol_actors.lifecycle.definitions import KINDS, SEPARATOR, SPECS, Edge, MachineSpec, State
from anweddol_actors.lifecycle.machine import IllegalTransition, Lifecycle, replay

__all__ = [
    "KINDS",
    "SEPARATOR",
    "SPECS",
    "Edge",
    "IllegalTransition",
    "Lifecycle",
    "MachineSpec",
    "State",
    "replay",
]
