"""What every entity actor shares: its machine governs what it does.

An entity actor asks its machine first and acts after: the trigger is accepted and
journalled (``Lifecycle.fire``), then the side effect runs. A trigger the machine refuses
raises :class:`~anweddol_actors.lifecycle.IllegalTransition` before anything happens, so
calling ``open`` twice cannot open a second SSH session. A side effect that fails after
its transition was journalled does not pretend the transition did not happen: the entity
moves to ``failed``, lets go of what it holds, and ends ``destroyed`` (transitions' rule,
STYLE.md).

Supervision: any exception escaping an action of an entity (``@governed``) ends that
entity the same way, then the entity *tells* its supervisor (``on_failed``), which tears
down what depends on it and reports the error; the server keeps serving.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import pykka

from anweddol_actors.errors import AnweddolError
from anweddol_actors.lifecycle import IllegalTransition, Lifecycle, Transition

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Told (never asked: the supervisor may be waiting on this actor) when an entity failed:
# (entity id, kind, the journalled ``fail`` transition, the exception).
FailureListener = Callable[[str, str, Transition, BaseException], None]


class Refused(AnweddolError, ValueError):
    """An entity was asked something its state or the arguments do not allow; nothing was
    done, so the entity is as it was (like IllegalTransition, and unlike a failure)."""


def one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def governed(method: F) -> F:
    """An action of an entity: an exception after the machine accepted it fails the entity."""

    @functools.wraps(method)
    def wrapper(self: EntityActor, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (IllegalTransition, Refused):
            raise  # refused before anything was done: the entity is as it was
        except Exception as exc:
            self.fail(exc)
            raise

    return wrapper  # type: ignore[return-value]


class EntityActor(pykka.ThreadingActor):
    """An actor that owns one entity's machine and what the entity holds outside the
    process (a domain, a port, an SSH session)."""

    lifecycle: Lifecycle

    def __init__(self, on_failed: FailureListener | None = None) -> None:
        super().__init__()
        self.on_failed = on_failed
        self.failure: Transition | None = None

    # -- what subclasses provide ---------------------------------------------------

    def release(self) -> None:
        """Let go of everything held outside the process; idempotent; may raise."""
        raise NotImplementedError

    # -- ending ------------------------------------------------------------------------

    def fail(self, exc: BaseException, context: int | None = None) -> Transition | None:
        """Journal ``fail``, release, journal ``destroy`` (when the release worked), then
        tell the supervisor. Idempotent: an entity fails once."""
        if not self.lifecycle.can("fail"):
            return None
        reason = one_line(exc)
        transition = self.lifecycle.fire("fail", context=context, details={"reason": reason})
        self.failure = transition
        log.warning("%s %s failed: %s", self.lifecycle.kind, self.lifecycle.entity_id, reason)
        self._release_then_destroy(context)
        if self.on_failed is not None:
            try:
                self.on_failed(self.lifecycle.entity_id, self.lifecycle.kind, transition, exc)
            except Exception:
                log.exception("could not tell the supervisor about %s", self.lifecycle.entity_id)
        return transition

    def end(
        self,
        stop_trigger: str,
        context: int | None = None,
        reason: str | None = None,
        details: dict | None = None,
    ) -> Transition | None:
        """Take a live entity to ``destroyed``: ``stop_trigger`` (or ``fail`` with a
        ``reason``) journalled first, then the release, then ``destroy``.

        Returns the journalled stop/fail transition when the entity was started (the caller
        fires the matching stop event), else None. When the release raises, the entity is
        left ``failed`` (journalled with the error) and the error propagates: what it holds
        is not known to be gone, so nothing that depends on that may be freed.
        """
        if self.lifecycle.is_terminal:
            return None
        was_started = self.lifecycle.is_in("started")
        transition = None
        if was_started:
            trigger = "fail" if reason else stop_trigger
            details = {"reason": reason} if reason else details
            transition = self.lifecycle.fire(trigger, context=context, details=details)
        elif reason and self.lifecycle.can("fail"):
            self.lifecycle.fire("fail", context=context, details={"reason": reason})
        try:
            self.release()
        except Exception as exc:
            if self.lifecycle.can("fail"):
                self.lifecycle.fire(
                    "fail", context=context, details={"reason": f"release: {one_line(exc)}"}
                )
            raise
        if self.lifecycle.can("destroy"):
            self.lifecycle.fire("destroy", context=context)
        return transition

    def retry_release(self) -> None:
        """For an entity left ``failed`` because its release raised: try again, and end
        it ``destroyed`` once it worked. Raises while it still does not."""
        if self.lifecycle.state == "failed":  # a live entity belongs to its owner
            self._release_then_destroy(None, quiet=False)

    def _release_then_destroy(self, context: int | None, quiet: bool = True) -> None:
        try:
            self.release()
        except Exception:
            if not quiet:
                raise
            log.exception(
                "%s %s could not release what it holds",
                self.lifecycle.kind,
                self.lifecycle.entity_id,
            )
            return  # stays failed: not known to be gone
        if self.lifecycle.can("destroy"):
            self.lifecycle.fire("destroy", context=context)

    # -- pykka hooks: however the actor ends, it lets go --------------------------------

    def on_stop(self) -> None:
        self._end_quietly()

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self._end_quietly()

    def _end_quietly(self) -> None:
        try:
            if not self.lifecycle.is_terminal:
                self.end(
                    "stop", reason="actor stopped" if self.lifecycle.is_in("started") else None
                )
        except Exception:
            log.exception("%s could not release what it holds", type(self).__name__)
