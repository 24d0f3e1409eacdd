"""Random walks, legal and illegal, over each kind of lifecycle, checked against the journal.

The expected moves come from ``MachineSpec.leaf_edges()`` (the table read as data, parent
sources expanded by hand) and, for the create step, from whether the entity has moved yet;
the moves taken come from transitions' hierarchical machine. Agreement at every step means
the machine does what the table says.
"""

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, precondition, rule

from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import (
    KINDS,
    SPECS,
    IllegalTransition,
    Lifecycle,
    Transition,
    replay,
)

ALL_TRIGGERS = sorted({trigger for spec in SPECS.values() for trigger in spec.triggers})
# Names no machine knows, including near misses of real ones.
MAX_ENTITIES = 3
BOGUS_TRIGGERS = ["", "Start", "started", "destroy ", "to_destroyed", "trigger", "Create"]

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
json_dicts = st.dictionaries(st.text(min_size=1, max_size=6), json_scalars, max_size=3)


class LifecycleWalk(RuleBasedStateMachine):
    """A few entities of one kind; after each fire, the whole journal is compared with a model.

    The model (``self.rows``) is the journal as it must be: the checks after each step
    read the database once and compare, which keeps a CI run of thousands of steps short.
    """

    entities = Bundle("entities")

    def __init__(self):
        super().__init__()
        self.journal = Journal(":memory:")
        self.count = 0
        self.rows: list[dict] = []
        self.entity_rows: dict[str, dict] = {}

    def teardown(self):
        self.journal.close()

    kind: str  # set by walk_for()

    @initialize(target=entities)
    def first(self):
        return self.new_entity(None)

    # A few entities per run, so that walks are long enough to reach every state.
    @precondition(lambda self: self.count < MAX_ENTITIES)
    @rule(target=entities, data=st.none() | json_dicts, create=st.booleans())
    def new_entity(self, data, create=False):
        kind = self.kind
        self.count += 1
        lifecycle = Lifecycle(kind, f"{kind}-{self.count}", self.journal, data=data)
        assert lifecycle.state == SPECS[kind].initial
        assert lifecycle.data == (data or {})
        # Writes nothing: checked here for its row, by the next full check for the rest.
        assert self.journal.entity(lifecycle.entity_id) is None
        # Entities born with the create step and entities that skip it, side by side.
        if create:
            self._fire(lifecycle, "create", {"new": True}, data, None, method=True)
        return lifecycle

    @rule(
        lifecycle=entities,
        choice=st.data(),
        details=st.none() | json_dicts,
        data=st.none() | json_dicts,
        context=st.none() | st.integers(0, 2**31),
    )
    def fire_any(self, lifecycle, choice, details, data, context):
        # The kind's own triggers (legal or not in the current state), other kinds'
        # triggers and names no machine knows.
        triggers = list(SPECS[self.kind].triggers) + ALL_TRIGGERS + BOGUS_TRIGGERS
        trigger = choice.draw(st.sampled_from(triggers), label="trigger")
        self._fire(lifecycle, trigger, details, data, context)

    @rule(lifecycle=entities, choice=st.data())
    def fire_legal(self, lifecycle, choice):
        # Random triggers are mostly illegal; this rule makes walks reach deep states.
        allowed = sorted(lifecycle.allowed_triggers)
        if allowed:
            trigger = choice.draw(st.sampled_from(allowed), label="trigger")
            self._fire(lifecycle, trigger, {"entities": self.count}, None, None)
        else:
            self._check_terminal(lifecycle)

    @rule(lifecycle=entities, last=st.booleans())
    def fire_first_or_last(self, lifecycle, last):
        # Edges are declared along the happy path and failures come last, so the first
        # allowed trigger moves the entity deeper (created → started_booting → ...) and the
        # last one usually fails it. Random choices alone rarely reach the deep states, and
        # hypothesis favours the first element of a sampled list. The create step is left to
        # the other rules: it moves no deeper.
        allowed = [t for t in lifecycle.allowed_triggers if t != SPECS[self.kind].create_trigger]
        if allowed:
            self._fire(lifecycle, allowed[-1 if last else 0], None, {"last": last}, 1)
        else:
            self._check_terminal(lifecycle)

    @rule(lifecycle=entities, choice=st.data())
    def take_edge(self, lifecycle, choice):
        # Each edge still ahead of the entity as likely as any other: walk to a drawn edge's
        # source by the shortest path, then take it. The side roads off deep states (a
        # request refused, a stopped container failing) are otherwise seldom reached within
        # a run's steps.
        spec = SPECS[self.kind]
        paths = _paths(spec, lifecycle.state)
        ahead = sorted(edge for edge in spec.leaf_edges() if edge[0] in paths)
        if not ahead:
            self._check_terminal(lifecycle)
            return
        source, trigger = choice.draw(st.sampled_from(ahead), label="edge")
        for step in [*paths[source], trigger]:
            self._fire(lifecycle, step, None, None, None)

    def _expected(self, lifecycle, trigger):
        """``(journalled source, dest)`` of *trigger* now, or None when it must be refused."""
        spec = SPECS[lifecycle.kind]
        if trigger == spec.create_trigger:
            # Fresh = nothing journalled yet for it (every accepted move writes its row).
            fresh = lifecycle.entity_id not in self.entity_rows
            return ("", spec.initial) if fresh else None
        dest = spec.leaf_edges().get((lifecycle.state, trigger))
        return None if dest is None else (lifecycle.state, dest)

    def _fire(self, lifecycle, trigger, details, data, context, method=False):
        state_before = lifecycle.state
        expected = self._expected(lifecycle, trigger)
        data_before = lifecycle.data
        arguments = {"context": context, "details": details, "data": data}

        def fire():
            return lifecycle.create(**arguments) if method else lifecycle.fire(trigger, **arguments)

        if expected is None:
            assert not lifecycle.can(trigger)
            assert trigger not in lifecycle.allowed_triggers
            with pytest.raises(IllegalTransition) as caught:
                fire()
            assert (caught.value.state, caught.value.trigger) == (state_before, trigger)
            assert lifecycle.state == state_before
            assert lifecycle.data == data_before
        else:
            source, dest = expected
            assert lifecycle.can(trigger)
            assert trigger in lifecycle.allowed_triggers
            transition = fire()
            assert transition == Transition(
                lifecycle.kind, lifecycle.entity_id, trigger, source, dest, context, details
            )
            assert lifecycle.state == dest
            assert lifecycle.data == {**data_before, **(data or {})}
            # The one row this accepted trigger must have added (id and time aside).
            self.rows.append(
                {
                    "kind": lifecycle.kind,
                    "entity_id": lifecycle.entity_id,
                    "trigger": trigger,
                    "source": source,
                    "dest": dest,
                    "context": context,
                    "details": details,
                }
            )
            self.entity_rows[lifecycle.entity_id] = {
                "kind": lifecycle.kind,
                "entity_id": lifecycle.entity_id,
                "state": dest,
                "data": lifecycle.data,
                "owner": "",  # the unnamed single front end's
            }
        self._check_journal(lifecycle)
        self._check_terminal(lifecycle)

    def _check_journal(self, lifecycle):
        history = self.journal.history()
        assert [_without(row, "id", "time") for row in history] == self.rows
        assert [row["id"] for row in history] == sorted({row["id"] for row in history})
        entity = self.journal.entity(lifecycle.entity_id)
        expected = self.entity_rows.get(lifecycle.entity_id)
        assert (entity and _without(entity, "updated")) == expected

        own = [row for row in history if row["entity_id"] == lifecycle.entity_id]
        assert replay(lifecycle.kind, own) == lifecycle.state
        live = {row["entity_id"] for row in self.journal.live_entities(kind=lifecycle.kind)}
        assert (lifecycle.entity_id in live) == bool(own and not lifecycle.is_terminal)

    def _check_terminal(self, lifecycle):
        spec = SPECS[lifecycle.kind]
        assert lifecycle.state in spec.leaves
        assert lifecycle.is_terminal == (lifecycle.state in spec.terminal)
        if lifecycle.is_terminal:
            assert lifecycle.allowed_triggers == ()
            assert not any(lifecycle.can(trigger) for trigger in ALL_TRIGGERS)


def _paths(spec, start):
    """``state -> shortest trigger sequence from start`` for every state within reach."""
    paths = {start: []}
    frontier = [start]
    table = spec.leaf_edges()
    for state in frontier:  # breadth first: the list grows while it is read
        for (source, trigger), dest in table.items():
            if source == state and dest not in paths:
                paths[dest] = [*paths[state], trigger]
                frontier.append(dest)
    return paths


def _without(row, *keys):
    return {key: value for key, value in row.items() if key not in keys}


def walk_for(kind):
    """The walk over one kind, with its share of the profile's example budget.

    One machine per kind gives every kind the same attention (hypothesis favours the first
    element of a sampled list, so a shared walk mostly exercised the server); sharing the
    budget keeps the CI profile's total at what a single walk would cost.
    """
    walk = type(f"{kind.title().replace('_', '')}Walk", (LifecycleWalk,), {"kind": kind})
    budget = max(10, settings.default.max_examples // len(KINDS))
    walk.TestCase.settings = settings(settings.default, max_examples=budget)
    return walk.TestCase


TestServerWalk = walk_for("server")
TestSessionWalk = walk_for("session")
TestContainerWalk = walk_for("container")
TestEndpointShellWalk = walk_for("endpoint_shell")
TestForwarderWalk = walk_for("forwarder")
