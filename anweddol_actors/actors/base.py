"""What the entity actors share: ending a lifecycle, and letting go of what they hold."""

from __future__ import annotations

import logging

import pykka

from anweddol_actors.lifecycle import Lifecycle

log = logging.getLogger(__name__)


def finish(
    lifecycle: Lifecycle, stop_trigger: str, context: int | None, reason: str | None
) -> None:
    """Take a live entity to ``destroyed``: through ``stop_trigger`` after a normal end, or
    ``fail`` when there is a ``reason``; each step journalled. Idempotent."""
    details = {"reason": reason} if reason else None
    if lifecycle.is_in("started"):
        lifecycle.fire("fail" if reason else stop_trigger, context=context, details=details)
    elif reason and lifecycle.can("fail"):
        lifecycle.fire("fail", context=context, details=details)
    if lifecycle.can("destroy"):
        lifecycle.fire("destroy", context=context)


class OwningActor(pykka.ThreadingActor):
    """An actor holding something outside the process (a domain, a port, an SSH session).

    However the actor ends — stopped, or its message loop failing — it lets go of it
    (DESIGN.md, threading rules).
    """

    def release(self) -> None:
        raise NotImplementedError

    def on_stop(self) -> None:
        self._release_logged()

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self._release_logged()

    def _release_logged(self) -> None:
        try:
            self.release()
        except Exception:
            log.exception("%s could not release what it holds", type(self).__name__)
