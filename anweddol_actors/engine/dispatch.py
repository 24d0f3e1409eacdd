"""Seed events: the handler table and the one way to run a handler.

An event is fired with the journalled transition that backs it in hand (the table in
:mod:`anweddol_actors.lifecycle.events` says which transitions back which events), so a
handler can never run before its step is durable: :meth:`Dispatch.emit` refuses an event
its transition does not back. Handlers receive engine-level data (a channel, actor
proxies); the façade (``core/``) installs handlers that present them as the seed's objects.

One error policy (:meth:`Dispatch.report`): a runtime error is counted once and reported
through ``on_runtime_error`` once; a raising ``on_runtime_error`` handler is logged, never
reported again.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

from anweddol_actors.errors import AnweddolError
from anweddol_actors.lifecycle import Transition
from anweddol_actors.lifecycle.events import ALL_EVENTS, CONTEXT_ERROR, EVENT_RUNTIME_ERROR, backs

log = logging.getLogger(__name__)

# ``handler(context, data)``: data is engine-level (see the module docstring).
Handler = Callable[[int, dict], Any]

_REPORTED = "_anweddol_reported"


class UnknownEvent(AnweddolError, RuntimeError):
    """An event name that is not one of the seed's 19."""


class UnbackedEvent(AnweddolError, RuntimeError):
    """An event fired without the journalled transition that backs it: a bug here."""


class Dispatch:
    """The table of event handlers, safe to change while sessions fire events."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._errors = 0
        # Told each counted error's entity kind (None: no entity's ``fail`` behind it):
        # the server's metrics count them by kind there.
        self.on_error: Callable[[str | None], None] | None = None

    # -- the table ---------------------------------------------------------------------

    def set(self, event: str, handler: Handler | None) -> None:
        _check(event)
        with self._lock:
            if handler is None:
                self._handlers.pop(event, None)
            else:
                self._handlers[event] = handler

    def get(self, event: str) -> Handler | None:
        with self._lock:
            return self._handlers.get(event)

    # -- firing ------------------------------------------------------------------------

    def emit(self, transition: Transition, event: str, context: int, data: dict) -> Any:
        """Run ``event``'s handler after ``transition`` (journalled). Exceptions propagate:
        the caller is in the middle of a step and decides what failing it means."""
        _check(event)
        if not backs(transition, event):
            raise UnbackedEvent(
                f"{event} fired after {transition.kind}.{transition.trigger}, which does not"
                " back it (lifecycle/events.py)"
            )
        handler = self.get(event)
        if handler is None:
            return None
        return handler(context, dict(data))

    def emit_contained(self, transition: Transition, event: str, context: int, data: dict) -> bool:
        """Emit where nothing can be aborted (a stop, an unwind, a close): a raising handler
        is reported, not propagated. True when the handler returned normally."""
        try:
            self.emit(transition, event, context, data)
        except Exception as exc:
            log.warning("%s handler raised: %s", event, exc)
            self.report(exc, data, transition)
            return False
        return True

    def trigger(self, event: str, context: int, data: dict) -> Any:
        """Run a handler because a user asked for it (the seed's ``triggerEvent``): no
        transition is implied, and the user sees what the handler raises."""
        _check(event)
        handler = self.get(event)
        return None if handler is None else handler(context, dict(data))

    # -- the error policy --------------------------------------------------------------

    @property
    def runtime_errors(self) -> int:
        return self._errors

    def count_error(self, kind: str | None = None) -> None:
        with self._lock:
            self._errors += 1
        if self.on_error is not None:
            self.on_error(kind)

    def report(
        self,
        exc: BaseException,
        data: dict | None = None,
        transition: Transition | None = None,
        context: int = CONTEXT_ERROR,
    ) -> None:
        """Count ``exc`` and run ``on_runtime_error`` once for it, whoever reports it.

        ``transition``: the journalled ``fail`` behind the report when there is one; a
        report without one (an error of the server itself) runs the handler all the same.
        """
        if getattr(exc, _REPORTED, False):
            return
        try:
            setattr(exc, _REPORTED, True)
        except AttributeError:
            pass  # an exception type with __slots__: it may be reported twice, no worse
        self.count_error(None if transition is None else transition.kind)
        handler = self.get(EVENT_RUNTIME_ERROR)
        if handler is None:
            return
        if transition is not None and not backs(transition, EVENT_RUNTIME_ERROR):
            transition = None
        payload = {
            **(data or {}),
            "exception": exc,
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        }
        try:
            handler(context, payload)
        except Exception:
            log.exception("on_runtime_error handler raised (not reported again)")


def _check(event: str) -> None:
    if event not in ALL_EVENTS:
        raise UnknownEvent(f"The event {event!r} does not exist")
