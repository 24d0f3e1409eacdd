"""Every entity's lifecycle, declared as data in one place.

Theory of operation: all kinds share one skeleton, ``created → started → stopped →
destroyed``, plus a ``failed`` state reachable from ``created``, ``started`` and ``stopped``.
Kinds that have more to say refine ``started`` with child states (a hierarchical machine:
the full name of a child is ``started_<child>``, the separator being ``_``). A transition
whose source is a parent state applies to every child of that parent. ``destroyed`` is the
only terminal state: nothing leaves it.

Before ``created`` there is the initial pseudo-state: the ``create`` step
(:attr:`MachineSpec.create_trigger`) leaves it, once, so that an entity's birth is
journalled like any other move (source ``""``). It is not an :class:`Edge`: no state of the
machine is its source, and it is taken at most once, by a lifecycle that has done nothing yet.

The machines (``machine.py``), the journal replay, the statecharts (``render.py``) and the
tests are all built from :data:`SPECS`, so changing a machine means changing this table and
nothing else (then re-rendering ``statecharts/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

SEPARATOR = "_"


@dataclass(frozen=True)
class State:
    name: str
    children: tuple[str, ...] = ()


@dataclass(frozen=True)
class Edge:
    trigger: str
    sources: tuple[str, ...]
    dest: str


@dataclass(frozen=True)
class MachineSpec:
    kind: str
    states: tuple[State, ...]
    edges: tuple[Edge, ...]
    initial: str = "created"
    terminal: frozenset[str] = frozenset({"destroyed"})
    create_trigger: str = "create"

    @property
    def leaves(self) -> tuple[str, ...]:
        """Full names of the states an entity can actually be in, in declaration order."""
        names: list[str] = []
        for state in self.states:
            if state.children:
                names.extend(f"{state.name}{SEPARATOR}{child}" for child in state.children)
            else:
                names.append(state.name)
        return tuple(names)

    @property
    def names(self) -> frozenset[str]:
        """Every state name, parents included (valid as a transition source)."""
        return frozenset(self.leaves) | {state.name for state in self.states}

    @property
    def edge_triggers(self) -> tuple[str, ...]:
        """The triggers of the edges: what the running machine itself knows."""
        return tuple(dict.fromkeys(edge.trigger for edge in self.edges))

    @property
    def triggers(self) -> tuple[str, ...]:
        """Every trigger a lifecycle of this kind may fire: the create step, then the edges'."""
        return (self.create_trigger, *self.edge_triggers)

    def leaf_edges(self) -> dict[tuple[str, str], str]:
        """``(leaf source, trigger) -> dest`` with parent sources expanded to their children."""
        table: dict[tuple[str, str], str] = {}
        for edge in self.edges:
            for leaf in self.leaves:
                if any(_within(leaf, source) for source in edge.sources):
                    table[(leaf, edge.trigger)] = edge.dest
        return table

    def states_config(self) -> list[str | dict]:
        """The ``states`` argument of transitions' HierarchicalMachine."""
        return [
            {"name": state.name, "children": list(state.children)} if state.children else state.name
            for state in self.states
        ]

    def transitions_config(self) -> list[dict]:
        """The ``transitions`` argument of transitions' HierarchicalMachine."""
        return [
            {"trigger": edge.trigger, "source": list(edge.sources), "dest": edge.dest}
            for edge in self.edges
        ]


def _within(leaf: str, state: str) -> bool:
    return leaf == state or leaf.startswith(state + SEPARATOR)


def _validate(spec: MachineSpec) -> MachineSpec:
    # Checked at import so that a typo in the table fails every test at once, not one
    # transition at run time.
    leaves = set(spec.leaves)
    if spec.initial not in leaves:
        raise ValueError(f"{spec.kind}: initial state {spec.initial!r} is not a leaf state")
    if not spec.terminal <= leaves:
        raise ValueError(f"{spec.kind}: terminal states {sorted(spec.terminal - leaves)} unknown")
    # The journal tells the create step from the others by its trigger alone.
    if not spec.create_trigger or spec.create_trigger in spec.edge_triggers:
        raise ValueError(f"{spec.kind}: create trigger {spec.create_trigger!r} must be its own")
    seen: set[tuple[str, str]] = set()
    for edge in spec.edges:
        unknown = [source for source in edge.sources if source not in spec.names]
        if unknown:
            raise ValueError(f"{spec.kind}.{edge.trigger}: unknown source(s) {unknown}")
        # A dest must be a leaf: the journal records the dest as the state the entity is in.
        if edge.dest not in leaves:
            raise ValueError(f"{spec.kind}.{edge.trigger}: dest {edge.dest!r} is not a leaf state")
        for leaf in leaves:
            if any(_within(leaf, source) for source in edge.sources):
                if leaf in spec.terminal:
                    raise ValueError(f"{spec.kind}.{edge.trigger}: leaves terminal state {leaf!r}")
                if (leaf, edge.trigger) in seen:
                    raise ValueError(f"{spec.kind}.{edge.trigger}: two edges from {leaf!r}")
                seen.add((leaf, edge.trigger))
    return spec


_SKELETON = (State("created"), State("started"), State("stopped"), State("destroyed"))
_FAILED = State("failed")
# `stopped` too: an undo step that raised after the stop was journalled (a domain that
# could not be destroyed) must still be recorded as a failure.
_FAILABLE = ("created", "started", "stopped")

SERVER = MachineSpec(
    kind="server",
    states=(*_SKELETON, _FAILED),
    edges=(
        Edge("start", ("created",), "started"),
        Edge("stop", ("started",), "stopped"),
        Edge("fail", _FAILABLE, "failed"),
        Edge("destroy", ("stopped", "failed"), "destroyed"),
    ),
)

SESSION = MachineSpec(
    kind="session",
    states=(
        State("created"),
        State("started", ("handshaking", "ready", "handling", "rejecting")),
        State("stopped"),
        State("destroyed"),
        _FAILED,
    ),
    edges=(
        Edge("start", ("created",), "started_handshaking"),
        Edge("handshake", ("started_handshaking",), "started_ready"),
        Edge("request", ("started_ready",), "started_handling"),
        # The three ways a request is refused; the session then only closes (or fails).
        Edge("malformed", ("started_ready",), "started_rejecting"),
        Edge("unhandled", ("started_handling",), "started_rejecting"),
        Edge("deny", ("started_handling",), "started_rejecting"),
        Edge("close", ("created", "started"), "stopped"),
        Edge("fail", _FAILABLE, "failed"),
        Edge("destroy", ("stopped", "failed"), "destroyed"),
    ),
)

CONTAINER = MachineSpec(
    kind="container",
    states=(
        State("created"),
        State("started", ("booting", "administered", "pooled", "serving")),
        State("stopped"),
        State("destroyed"),
        _FAILED,
        # Its hypervisor host was unreachable longer than the grace (engine/hostloss.py):
        # out of service, credentials revoked, slot freed; its domain may still run there.
        State("lost"),
    ),
    edges=(
        # start = the libvirt domain is running; the guest is still booting.
        Edge("start", ("created",), "started_booting"),
        Edge("administer", ("started_booting",), "started_administered"),
        # A warm pool's container, administered and its forwarder port reserved, waits
        # here for a CREATE; no client holds it yet, so a restart destroys it.
        Edge("pool", ("started_administered",), "started_pooled"),
        # serve = a client holds it (crash adoption keys on this state alone).
        Edge("serve", ("started_administered", "started_pooled"), "started_serving"),
        Edge("stop", ("started",), "stopped"),
        Edge("fail", _FAILABLE, "failed"),
        # Every state a live or pooled container (or a fill) is in while its host is away.
        Edge("lose", ("started",), "lost"),
        # From lost, only the end: once its leftover domain is destroyed (the host is back,
        # or the next start reconciles it). No way back to serving: its credentials were
        # revoked and its forwarder's port freed when it was lost (engine/hostloss.py).
        Edge("destroy", ("created", "stopped", "failed", "lost"), "destroyed"),
    ),
)

ENDPOINT_SHELL = MachineSpec(
    kind="endpoint_shell",
    states=(*_SKELETON, _FAILED),
    edges=(
        Edge("open", ("created",), "started"),
        Edge("close", ("started",), "stopped"),
        Edge("fail", _FAILABLE, "failed"),
        Edge("destroy", ("created", "stopped", "failed"), "destroyed"),
    ),
)

FORWARDER = MachineSpec(
    kind="forwarder",
    states=(*_SKELETON, _FAILED),
    edges=(
        Edge("start", ("created",), "started"),
        Edge("stop", ("started",), "stopped"),
        Edge("fail", _FAILABLE, "failed"),
        Edge("destroy", ("created", "stopped", "failed"), "destroyed"),
    ),
)

SPECS: MappingProxyType[str, MachineSpec] = MappingProxyType(
    {spec.kind: _validate(spec) for spec in (SERVER, SESSION, CONTAINER, ENDPOINT_SHELL, FORWARDER)}
)

KINDS: tuple[str, ...] = tuple(SPECS)
