"""Statecharts: committed files match a fresh render, edges match the machines."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import SPECS, Lifecycle
from anweddol_actors.lifecycle.render import HIGHLIGHT, render_all, to_dot, to_mermaid, to_svg

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "statecharts"
RERENDER = "re-render with: python -m anweddol_actors statecharts"


def _declared_edges(spec):
    return {(source, edge.trigger, edge.dest) for edge in spec.edges for source in edge.sources}


def test_committed_statecharts_are_a_fresh_render(tmp_path):
    fresh = sorted(path.name for path in render_all(tmp_path))
    assert fresh == sorted(f"{kind}.{ext}" for kind in SPECS for ext in ("svg", "mmd"))
    committed = sorted(p.name for p in COMMITTED.iterdir() if p.suffix in (".svg", ".mmd"))
    assert committed == fresh, f"statecharts/ holds other files than the machines; {RERENDER}"
    for name in fresh:
        assert (COMMITTED / name).read_bytes() == (tmp_path / name).read_bytes(), (
            f"statecharts/{name} is stale; {RERENDER}"
        )


def test_svg_is_byte_stable_and_versionless():
    dot = to_dot(SPECS["container"], current="started_serving", entity_id="x")
    first, second = to_svg(dot), to_svg(dot)
    assert first == second
    assert b"graphviz version" not in first
    assert first.lstrip().startswith(b"<?xml") and first.rstrip().endswith(b"</svg>")


@pytest.mark.parametrize("kind", SPECS)
def test_dot_draws_exactly_the_declared_edges(kind):
    spec = SPECS[kind]
    edges = set()
    for tail, head, attributes in re.findall(r'^\s*"([^"]+)" -> "([^"]+)" \[(.*)\];$',
                                              to_dot(spec), re.M):  # fmt: skip
        trigger = re.search(r'label="([^"]*)"', attributes).group(1)
        cluster = re.search(r'ltail="cluster_([^"]*)"', attributes)
        edges.add((cluster.group(1) if cluster else tail, trigger, head))
    # The initial pseudo-state's arrow is the create step.
    assert edges == _declared_edges(spec) | {("[*]", "create", "created")}


@pytest.mark.parametrize("kind", SPECS)
def test_mermaid_draws_exactly_the_declared_edges(kind):
    spec = SPECS[kind]
    text = to_mermaid(spec)
    assert text.splitlines()[3] == "stateDiagram-v2"
    edges = set(re.findall(r"^    (\w+) --> (\w+) : (\w+)$", text, re.M))
    assert {(source, trigger, dest) for source, dest, trigger in edges} == _declared_edges(spec)
    assert "    [*] --> created : create\n" in text and "    destroyed --> [*]\n" in text
    assert "classDef" not in text


def test_entity_render_highlights_its_current_state(tmp_path):
    db = tmp_path / "journal.sqlite3"
    with Journal(db) as journal:
        session = Lifecycle("session", "s/7", journal)
        session.fire("start")
        session.fire("handshake")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "anweddol_actors", "statecharts", "--entity", "s/7",
         "--db", str(db), "--out", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["session-s_7.mmd", "session-s_7.svg"]
    svg = (out / "session-s_7.svg").read_text()
    nodes = dict(re.findall(r"<title>([^<]+)</title>\n<path fill=\"([^\"]+)\"", svg))
    assert nodes["started_ready"] == HIGHLIGHT
    others = set(SPECS["session"].leaves) - {"started_ready"}
    assert {nodes[name] for name in others} == {"white"}
    mmd = (out / "session-s_7.mmd").read_text()
    assert "class started_ready current" in mmd
    assert 'title: "session s/7 (in started_ready)"' in mmd


def test_entity_render_errors_are_one_line(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "anweddol_actors", "statecharts", "--out", str(tmp_path),
             *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    missing = run("--entity", "x", "--db", str(tmp_path / "absent.sqlite3"))
    assert (missing.returncode, missing.stderr.count("\n")) == (2, 1)
    db = tmp_path / "journal.sqlite3"
    with Journal(db) as journal:
        Lifecycle("container", "c", journal).fire("start")
        Lifecycle("forwarder", "c", journal).fire("start")
    unknown = run("--entity", "nobody", "--db", str(db))
    assert unknown.returncode == 2 and "no entity 'nobody'" in unknown.stderr
    ambiguous = run("--entity", "c", "--db", str(db))
    assert ambiguous.returncode == 2 and "--kind" in ambiguous.stderr
    chosen = run("--entity", "c", "--kind", "forwarder", "--db", str(db))
    assert chosen.returncode == 0, chosen.stderr
    assert (tmp_path / "forwarder-c.svg").is_file()
