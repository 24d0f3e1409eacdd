"""Containers by state, as the journal holds them: every container not yet destroyed.

The journal is where each container's machine state is written before it moves
(docs/architecture.md, "The journal"), so it is what the engine knows, in-flight CREATEs
and failed teardowns included. Every non-terminal state is reported, zeros too, so a
series does not vanish when its last container leaves it.
"""

from __future__ import annotations

from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle.definitions import SPECS

__all__ = ["CONTAINER_STATES", "containers_by_state"]

_SPEC = SPECS["container"]
# created, started_booting, started_administered, started_pooled, started_serving, stopped,
# failed, lost.
CONTAINER_STATES: tuple[str, ...] = tuple(
    state for state in _SPEC.leaves if state not in _SPEC.terminal
)


def containers_by_state(journal: Journal) -> dict[str, int]:
    """``{state: count}`` over :data:`CONTAINER_STATES` (one read of the entities table).
    Raises JournalError when the journal cannot be read."""
    counts = dict.fromkeys(CONTAINER_STATES, 0)
    for row in journal.live_entities(kind="container"):
        state = row["state"]
        counts[state] = counts.get(state, 0) + 1
    return counts
