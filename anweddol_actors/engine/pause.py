"""Test hooks: stop the engine at a named step so that a test can kill the process there.

Never on by default: ``Settings.pause_at`` is empty unless a test sets it (``serve`` reads
it from the ``ANWEDDOL_ACTORS_TEST_PAUSE_AT`` environment variable, a comma-separated list
of step names). The crash tests pause at each step of a CREATE and of a DESTROY, SIGKILL
the server there, restart it, and check that nothing leaked.
"""

from __future__ import annotations

import logging
import os
import time

from anweddol_actors.engine.settings import Settings

log = logging.getLogger(__name__)

# Each step is reached right after what its name says is done (and journalled).
CREATE_STEPS = (
    "create:created",
    "create:domain_started",
    "create:shell_opened",
    "create:credentials_set",
    "create:forwarder_started",
    "create:credentials_stored",
    "create:response_sent",
)
DESTROY_STEPS = (
    "destroy:authenticated",
    "destroy:credentials_deleted",
    "end:forwarder_stopped",
    "end:container_stopped",
    "destroy:response_sent",
)
STEPS = CREATE_STEPS + DESTROY_STEPS

# A paused engine waits this long, then goes on: every wait is bounded, even a test's.
PAUSE_SECONDS = 300.0


def pause(settings: Settings, step: str) -> None:
    """Wait here if a test asked to pause at ``step``; otherwise return at once."""
    if step not in settings.pause_at:
        return
    # The test reads this line to know the step is reached, then kills the process.
    log.warning("test hook: paused at %s (pid %d)", step, os.getpid())
    time.sleep(PAUSE_SECONDS)


def pause_points(text: str | None) -> frozenset[str]:
    """Step names from a comma-separated list; ``ValueError`` names an unknown one."""
    names = frozenset(name.strip() for name in (text or "").split(",") if name.strip())
    unknown = sorted(names - set(STEPS))
    if unknown:
        raise ValueError(f"unknown pause step {unknown[0]!r}; known: {', '.join(STEPS)}")
    return names
