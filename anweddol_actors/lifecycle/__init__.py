"""Entities' lifecycles: the machines as data, the journalled machine that runs them, and
the seed events their transitions back."""

from anweddol_actors.lifecycle.definitions import KINDS, SEPARATOR, SPECS, Edge, MachineSpec, State
from anweddol_actors.lifecycle.events import (
    ALL_EVENTS,
    EVENTS_OF,
    TransitionKey,
    backs,
    transitions_behind,
)
from anweddol_actors.lifecycle.machine import IllegalTransition, Lifecycle, Transition, replay

__all__ = [
    "ALL_EVENTS",
    "EVENTS_OF",
    "KINDS",
    "SEPARATOR",
    "SPECS",
    "Edge",
    "IllegalTransition",
    "Lifecycle",
    "MachineSpec",
    "State",
    "Transition",
    "TransitionKey",
    "backs",
    "replay",
    "transitions_behind",
]
