"""The machines are exactly the contract's, and the running machine follows the table."""

import pytest

from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import SPECS, Edge, IllegalTransition, Lifecycle, MachineSpec, State
from anweddol_actors.lifecycle.definitions import _validate

# The contract (INTERFACES.md), written out leaf by leaf, independently of definitions.py:
# kind -> {(source leaf, trigger): dest}. `fail` is also taken from `stopped`: an undo step
# that raised after the stop was journalled.
_FAILABLE = ("created", "started", "stopped")
CONTRACT = {
    "server": {
        ("created", "start"): "started",
        ("started", "stop"): "stopped",
        **{(s, "fail"): "failed" for s in _FAILABLE},
        **{(s, "destroy"): "destroyed" for s in ("stopped", "failed")},
    },
    "session": {
        ("created", "start"): "started_handshaking",
        ("started_handshaking", "handshake"): "started_ready",
        ("started_ready", "request"): "started_handling",
        ("started_ready", "malformed"): "started_rejecting",
        ("started_handling", "unhandled"): "started_rejecting",
        ("started_handling", "deny"): "started_rejecting",
        **{
            (s, t): d
            for s in (
                "created",
                "started_handshaking",
                "started_ready",
                "started_handling",
                "started_rejecting",
            )
            for t, d in (("close", "stopped"), ("fail", "failed"))
        },
        ("stopped", "fail"): "failed",
        **{(s, "destroy"): "destroyed" for s in ("stopped", "failed")},
    },
    "container": {
        ("created", "start"): "started_booting",
        ("started_booting", "administer"): "started_administered",
        # The warm pool's container waits administered for a CREATE, then serves.
        ("started_administered", "pool"): "started_pooled",
        ("started_administered", "serve"): "started_serving",
        ("started_pooled", "serve"): "started_serving",
        **{
            (s, "stop"): "stopped"
            for s in (
                "started_booting",
                "started_administered",
                "started_pooled",
                "started_serving",
            )
        },
        **{
            (s, "fail"): "failed"
            for s in (
                "created",
                "started_booting",
                "started_administered",
                "started_pooled",
                "started_serving",
                "stopped",
            )
        },
        # Its host away past the grace (engine/hostloss.py): lost from any started child,
        # and from lost only the end, once its leftover domain is destroyed.
        **{
            (s, "lose"): "lost"
            for s in (
                "started_booting",
                "started_administered",
                "started_pooled",
                "started_serving",
            )
        },
        **{(s, "destroy"): "destroyed" for s in ("created", "stopped", "failed", "lost")},
    },
    "endpoint_shell": {
        ("created", "open"): "started",
        ("started", "close"): "stopped",
        **{(s, "fail"): "failed" for s in _FAILABLE},
        **{(s, "destroy"): "destroyed" for s in ("created", "stopped", "failed")},
    },
    "forwarder": {
        ("created", "start"): "started",
        ("started", "stop"): "stopped",
        **{(s, "fail"): "failed" for s in _FAILABLE},
        **{(s, "destroy"): "destroyed" for s in ("created", "stopped", "failed")},
    },
}
LEAVES = {
    "server": {"created", "started", "stopped", "destroyed", "failed"},
    "session": {"created", "stopped", "destroyed", "failed"}
    | {f"started_{c}" for c in ("handshaking", "ready", "handling", "rejecting")},
    "container": {"created", "stopped", "destroyed", "failed", "lost"}
    | {f"started_{c}" for c in ("booting", "administered", "pooled", "serving")},
    "endpoint_shell": {"created", "started", "stopped", "destroyed", "failed"},
    "forwarder": {"created", "started", "stopped", "destroyed", "failed"},
}


def test_the_five_kinds_are_declared_in_order():
    assert list(SPECS) == ["server", "session", "container", "endpoint_shell", "forwarder"]


@pytest.mark.parametrize("kind", SPECS)
def test_spec_matches_the_contract(kind):
    spec = SPECS[kind]
    assert set(spec.leaves) == LEAVES[kind]
    assert spec.leaf_edges() == CONTRACT[kind]
    assert spec.initial == "created"
    assert spec.terminal == {"destroyed"}
    assert spec.create_trigger == "create"
    # The create step comes first (it is the only one a new entity may take), then each
    # edge trigger once.
    assert spec.triggers[0] == "create"
    assert sorted(spec.triggers[1:]) == sorted({trigger for _, trigger in CONTRACT[kind]})


@pytest.mark.parametrize("kind", SPECS)
def test_running_machine_takes_every_edge_and_no_other(kind):
    # Exhaustive: every (state, trigger) pair, started from that state. A lifecycle given a
    # state stands for an entity that exists: the create step is refused in all of them.
    spec = SPECS[kind]
    journal = Journal(":memory:")
    for source in spec.leaves:
        for trigger in spec.triggers:
            lifecycle = Lifecycle(kind, f"{source}/{trigger}", journal, state=source)
            expected = CONTRACT[kind].get((source, trigger))
            assert lifecycle.can(trigger) == (expected is not None), (source, trigger)
            if expected is None:
                with pytest.raises(IllegalTransition):
                    lifecycle.fire(trigger)
                assert lifecycle.state == source
            else:
                assert lifecycle.fire(trigger).dest == expected
    journal.close()


_TEST_STATES = (State("created"), State("started", ("a",)), State("destroyed"))


def _spec(*edges):
    return MachineSpec("test", _TEST_STATES, tuple(edges))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (_spec(Edge("go", ("nowhere",), "destroyed")), "unknown source"),
        (_spec(Edge("go", ("created",), "started")), "not a leaf"),
        (_spec(Edge("go", ("destroyed",), "created")), "leaves terminal state"),
        (
            _spec(Edge("go", ("started",), "created"), Edge("go", ("started_a",), "destroyed")),
            "two edges",
        ),
        (MachineSpec("test", (State("x"),), ()), "initial state"),
        (
            MachineSpec("test", _TEST_STATES, (Edge("create", ("created",), "destroyed"),)),
            "create trigger",
        ),
        (MachineSpec("test", _TEST_STATES, (), create_trigger=""), "create trigger"),
    ],
)
def test_malformed_specs_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        _validate(spec)
