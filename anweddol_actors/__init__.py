"""anweddol_actors: short-lived, SSH-reachable virtual machines for network clients.

The Anweddol server re-founded as an actor-model state machine engine. The public,
seed-compatible API lives in :mod:`anweddol_actors.core`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
