"""An entity's lifecycle: a transitions machine whose every move is journalled first.

Each kind has one transitions ``HierarchicalMachine``, built from its spec once per
process (:class:`_Moves`), not one per entity: building it cost more than a client
session's whole journal. It answers "where does ``trigger`` lead from ``state``?" for each
pair the first time it is asked, by firing the real machine from that state, and the
answer is kept (the machines have no conditions: the answer depends on nothing else). A
lifecycle holds only its state's name. :meth:`Lifecycle.fire` asks its kind's machine for
the move, writes the journal row, and only then changes the state, so that when ``fire``
returns the transition is durable, and when the write raises the state has not moved. The
entity acts on the new state after ``fire`` returns, and ``fire`` hands back the
:class:`Transition` it took so that the entity can tell what it is reacting to.

A lifecycle may be *deferred* (client sessions, until their first valid request): its
rows are then recorded in the lifecycle, in order, and written to the journal together,
in one transaction, when the deferral ends (:meth:`Lifecycle.make_durable`: with the next
row) or when the entity reaches its terminal state. ``fire`` still returns only once its
row is recorded, so what reacts to a transition still comes after its record; the row is
just not on disk yet. A crash loses only the unwritten rows of entities that had nothing
to recover (docs/architecture.md, "The journal").

The create step (see ``definitions.py``) is not part of the transitions machine, whose
states all exist: :meth:`Lifecycle.create` journals it directly, with the same guarantees.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from transitions.extensions import HierarchicalMachine

from anweddol_actors.errors import AnweddolError
from anweddol_actors.lifecycle.definitions import SEPARATOR, SPECS, MachineSpec

if TYPE_CHECKING:
    from anweddol_actors.journal import Journal


class IllegalTransition(AnweddolError, ValueError):
    """A trigger that the entity's current state does not accept. Nothing was changed."""

    def __init__(self, kind: str, entity_id: str, trigger: str, state: str, allowed: Iterable[str]):
        self.kind = kind
        self.entity_id = entity_id
        self.trigger = trigger
        self.state = state
        self.allowed = tuple(allowed)
        accepted = ", ".join(self.allowed) if self.allowed else "none"
        super().__init__(
            f"{kind} {entity_id}: trigger {trigger!r} is not allowed in state {state!r}"
            f" (allowed: {accepted})"
        )


@dataclass(frozen=True)
class Transition:
    """One accepted, journalled move of one entity: what :meth:`Lifecycle.fire` returns.

    ``source`` is ``""`` for the create step (nothing came before it). ``details`` is a
    copy of what was journalled with the move.
    """

    kind: str
    entity_id: str
    trigger: str
    source: str
    dest: str
    context: int | None = None
    details: dict[str, Any] | None = None


class _Model:
    """The object transitions decorates with trigger methods and ``state``."""

    state: str


def _spec(kind: str) -> MachineSpec:
    try:
        return SPECS[kind]
    except KeyError:
        raise ValueError(f"unknown entity kind {kind!r} (known: {', '.join(SPECS)})") from None


def _check_state(spec: MachineSpec, state: str) -> None:
    if state not in spec.leaves:
        raise ValueError(f"{spec.kind}: {state!r} is not a state (states: {spec.leaves})")


def _build(spec: MachineSpec, model: _Model, initial: str) -> HierarchicalMachine:
    _check_state(spec, initial)
    return HierarchicalMachine(
        model=model,
        states=spec.states_config(),
        transitions=spec.transitions_config(),
        initial=initial,
        auto_transitions=False,
        send_event=True,
    )


class _Moves:
    """One kind's transitions machine and the moves it was asked for (module docstring)."""

    def __init__(self, spec: MachineSpec) -> None:
        self._spec = spec
        self._model = _Model()
        self._machine = _build(spec, self._model, spec.initial)
        self._edge_triggers = frozenset(spec.edge_triggers)
        # The machine and its one model are shared: one question at a time.
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str], str | None] = {}

    def dest(self, state: str, trigger: str) -> str | None:
        """The state ``trigger`` leads to from ``state``; None when it is not allowed."""
        key = (state, trigger)
        try:
            return self._known[key]
        except KeyError:
            pass
        with self._lock:
            dest = None
            if trigger in self._edge_triggers:
                self._machine.set_state(state, model=self._model)
                if self._model.may_trigger(trigger):
                    self._model.trigger(trigger)
                    dest = self._model.state
            self._known[key] = dest
        return dest


_MOVES: dict[str, _Moves] = {}
_MOVES_LOCK = threading.Lock()


def _moves(spec: MachineSpec) -> _Moves:
    """The kind's machine, built on first use."""
    moves = _MOVES.get(spec.kind)
    if moves is None:
        with _MOVES_LOCK:
            moves = _MOVES.get(spec.kind)
            if moves is None:
                moves = _MOVES[spec.kind] = _Moves(spec)
    return moves


def _allowed(spec: MachineSpec, moves: _Moves, state: str, fresh: bool) -> tuple[str, ...]:
    return tuple(
        trigger
        for trigger in spec.triggers
        if (fresh if trigger == spec.create_trigger else moves.dest(state, trigger) is not None)
    )


class Lifecycle:
    """The state of one entity, moved only by :meth:`fire`, journalled before it moves.

    Writes nothing until the first fire (:meth:`create`, normally). Safe to call from
    several threads, though an entity normally belongs to one actor.
    """

    def __init__(
        self,
        kind: str,
        entity_id: str,
        journal: Journal,
        data: Mapping[str, Any] | None = None,
        *,
        state: str | None = None,
        deferred: bool = False,
        synced: bool = True,
    ):
        """``deferred``: hold rows until :meth:`make_durable` or the terminal state (see
        the module docstring). ``synced``: each commit waits for the disk; False for an
        entity whose rows need only survive the server process (a client session: see
        ``Journal.record_many``)."""
        self._spec = _spec(kind)
        self.kind = kind
        self.entity_id = str(entity_id)
        self._journal = journal
        self._data: dict[str, Any] = dict(data or {})
        self._lock = threading.RLock()
        self._moves = _moves(self._spec)
        self._state = state or self._spec.initial
        _check_state(self._spec, self._state)
        # Only a lifecycle that starts from nothing may journal the entity's creation: one
        # given a state (resumed) stands for an entity the journal already holds.
        self._fresh = state is None
        self._deferred = deferred
        self._synced = synced
        self._pending: list[dict[str, Any]] = []

    @classmethod
    def resume(cls, journal: Journal, entity_id: str, kind: str | None = None) -> Lifecycle:
        """The lifecycle of an entity already in the journal, in its recorded state."""
        row = journal.entity(entity_id, kind=kind)
        if row is None:
            raise LookupError(f"no entity {entity_id} in the journal")
        return cls(row["kind"], row["entity_id"], journal, row["data"], state=row["state"])

    @property
    def state(self) -> str:
        return self._state

    @property
    def data(self) -> dict[str, Any]:
        return dict(self._data)

    @property
    def is_terminal(self) -> bool:
        return self.state in self._spec.terminal

    @property
    def deferred(self) -> bool:
        """True while rows are held in memory rather than written at each fire."""
        return self._deferred

    @property
    def pending(self) -> int:
        """Rows recorded but not yet written to the journal."""
        return len(self._pending)

    @property
    def held_rows(self) -> list[dict[str, Any]]:
        """Copies of the rows recorded but not yet written, oldest first, shaped like
        :meth:`Journal.history`'s rows (without ``id``)."""
        with self._lock:
            return [dict(row) for row in self._pending]

    def make_durable(self) -> None:
        """End the deferral: the rows held so far are written with the next fire's row, in
        the same transaction (or now by :meth:`flush`)."""
        with self._lock:
            self._deferred = False

    def flush(self) -> None:
        """Write the rows held so far, in one transaction (nothing when none are held)."""
        with self._lock:
            if self._pending:
                self._journal.record_many(self._pending, sync=self._synced)
                self._pending = []

    @property
    def allowed_triggers(self) -> tuple[str, ...]:
        with self._lock:
            return _allowed(self._spec, self._moves, self._state, self._fresh)

    def can(self, trigger: str) -> bool:
        with self._lock:
            if trigger == self._spec.create_trigger:
                return self._fresh
            return self._moves.dest(self._state, trigger) is not None

    def is_in(self, state: str) -> bool:
        """True in *state* or in one of its children (``is_in("started")``)."""
        current = self.state
        return current == state or current.startswith(state + SEPARATOR)

    def fire(
        self,
        trigger: str,
        *,
        context: int | None = None,
        details: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
    ) -> Transition:
        """Journal then take the transition *trigger*; return it.

        *data* is merged into the entity's recovery data (domain uuid, ports, ...);
        *details* and *context* go to this transition's row only. The create step is
        fired like the others (``fire("create")`` is :meth:`create`).
        Raises IllegalTransition (nothing changed) or JournalError (nothing changed).
        """
        with self._lock:
            if not self.can(trigger):
                raise IllegalTransition(
                    self.kind, self.entity_id, trigger, self.state, self.allowed_triggers
                )
            creating = trigger == self._spec.create_trigger
            source = "" if creating else self._state
            merged = {**self._data, **(data or {})}
            # The create step: the lifecycle already stands in the initial state, only
            # the journal moves. Any other: where the kind's machine says it leads.
            dest = self._state if creating else self._moves.dest(self._state, trigger)
            assert dest is not None  # can() said so, under the same lock
            # Raises with nothing changed: the state moves only once the row is written.
            self._record(trigger, source, dest, context, details, merged)
            self._state = dest
            self._data = merged
            self._fresh = False
            return Transition(
                kind=self.kind,
                entity_id=self.entity_id,
                trigger=trigger,
                source=source,
                dest=self.state,
                context=context,
                details=None if details is None else dict(details),
            )

    def create(
        self,
        *,
        context: int | None = None,
        details: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
    ) -> Transition:
        """Journal the entity's creation (source ``""``, dest the initial state).

        Allowed once, and only before anything else was fired on a lifecycle that was not
        given a state; otherwise IllegalTransition. Entities that skip it still work: their
        first row then has the initial state as its source.
        """
        return self.fire(self._spec.create_trigger, context=context, details=details, data=data)

    def _record(
        self,
        trigger: str,
        source: str,
        dest: str,
        context: int | None,
        details: dict[str, Any] | None,
        data: dict[str, Any],
    ) -> None:
        terminal = dest in self._spec.terminal
        row = {
            "time": datetime.now(UTC).isoformat(timespec="microseconds"),
            "kind": self.kind,
            "entity_id": self.entity_id,
            "trigger": trigger,
            "source": source,
            "dest": dest,
            "context": context,
            "details": None if details is None else dict(details),
            "data": dict(data),
            "terminal": terminal,
        }
        if self._deferred and not terminal:
            self._pending.append(row)
            return
        # Raises JournalError with nothing written: the held rows stay held and the state
        # does not move, as for an undeferred write.
        self._journal.record_many([*self._pending, row], sync=self._synced)
        self._pending = []

    def __repr__(self) -> str:
        return f"<Lifecycle {self.kind} {self.entity_id} {self.state}>"


def replay(kind: str, rows: Iterable[Mapping[str, Any]]) -> str:
    """The state reached by firing the journalled triggers of one entity, in order.

    Every row is checked against the machine: its source must be the replayed state and
    its dest the state the machine reaches. The first row may be the create step (source
    ``""``, dest the initial state), and only the first. Raises ValueError on any mismatch.
    """
    spec = _spec(kind)
    model = _Model()
    _build(spec, model, spec.initial)
    entity_id = None
    first = True
    for row in rows:
        where = f"journal row {row.get('id')}"
        if row["kind"] != kind:
            raise ValueError(f"{where}: kind {row['kind']!r}, replaying {kind!r}")
        if entity_id is None:
            entity_id = row["entity_id"]
        elif row["entity_id"] != entity_id:
            raise ValueError(f"{where}: entity {row['entity_id']!r}, replaying {entity_id!r}")
        trigger = row["trigger"]
        creating = trigger == spec.create_trigger
        if creating and not first:
            raise ValueError(f"{where}: {trigger!r} can only be an entity's first row")
        first = False
        expected_source = "" if creating else model.state
        if row["source"] != expected_source:
            raise ValueError(
                f"{where}: source {row['source']!r} but replay is in {expected_source!r}"
            )
        if not creating:
            if trigger not in spec.edge_triggers or not model.may_trigger(trigger):
                raise ValueError(f"{where}: {trigger!r} is not allowed in {model.state!r}")
            model.trigger(trigger)
        if model.state != row["dest"]:
            raise ValueError(
                f"{where}: dest {row['dest']!r} but the machine reached {model.state!r}"
            )
    return model.state
