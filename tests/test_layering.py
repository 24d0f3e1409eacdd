"""The layering contract of ``anweddol_actors``, checked statically with ``ast``.

Every ``.py`` file under ``anweddol_actors/`` is parsed (never imported). Rules:

a. Only ``core/`` and ``cli/`` import ``anweddol_actors.core`` (the seed-compatible
   camelCase façade sits on top); ``anweddol_actors/__init__.py`` and ``__main__.py``
   import ``cli`` only.
b. ``protocol/`` is sans-IO: it imports none of ``PROTOCOL_FORBIDDEN``.
c. Only ``hypervisor/`` imports libvirt; only ``journal/`` imports peewee and psycopg2.
d. Layers (``LAYERS``, top to bottom): a module imports only from its own package or lower
   layers; siblings may import each other only inside ``SIBLING_LAYER``. A top-level
   package in no layer is a failure. Imports under ``if TYPE_CHECKING:`` count.
e. No import cycles through module-level imports (``if TYPE_CHECKING:`` blocks and imports
   inside functions are not followed).
f. A project import inside a function carries its reason: a comment on the statement's
   line(s) or a comment line directly above, or directly above the first of a run of
   consecutive imports it belongs to (lint pragmas alone are not a reason).
g. Every exception class derives, directly or through project classes, from
   ``anweddol_actors.errors.AnweddolError`` (the name is resolved, so a re-export counts).

Each rule is a function ``check_*(root) -> list[str]`` over a package directory; the contract
tests run them on the real package, the ``test_checker_*`` tests on small fake packages
under ``tmp_path`` so that every rule is shown able to fail.

Imports counted for every rule: ``import``/``from ... import`` statements anywhere (module
level, functions, ``if``/``try`` blocks, ``TYPE_CHECKING`` blocks) and
``importlib.import_module("literal")`` / ``__import__("literal")`` calls. Imports built
from non-literal strings (``cli/__init__.py``'s subcommand loop) cannot be seen.

This module also holds the pytester tests of the leak checks of ``conftest.py`` (actors, and
libvirt domains of ``vm`` tests), kept here because this change owns only these two files.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import io
import re
import textwrap
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pykka
import pytest

pytest_plugins = ["pytester"]

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "anweddol_actors"

# Top to bottom. ``errors`` is the module anweddol_actors/errors.py.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),
    # admin: the admin socket's server (over the engine) and client; beside core, which
    # never imports it.
    # web: the HTTP front end (over the engine), beside them too.
    # bench: the benchmarks of `python -m anweddol_actors bench` (over the engine), too.
    ("core", "admin", "web", "bench"),
    ("engine",),
    ("actors", "transport"),
    (
        "config",
        "policy",
        "image",
        "forwarding",
        "guest",
        "hypervisor",
        "lifecycle",
        "journal",
        "client",
        "logs",
        "service",
        "metrics",
    ),
    ("protocol",),
    # The one exception base: everything, the sans-IO protocol included, derives from it.
    ("errors",),
)
SIBLING_LAYER = 4  # index in LAYERS of the group whose members may import each other
RANK = {part: rank for rank, group in enumerate(LAYERS) for part in group}
ENTRY_POINTS = ("__init__", "__main__")  # anweddol_actors/__init__.py, __main__.py: rule a

PROTOCOL_FORBIDDEN = frozenset(
    {"socket", "selectors", "threading", "asyncio", "pykka", "libvirt", "peewee"}
)
EXCLUSIVE_IMPORTS = {"libvirt": "hypervisor", "peewee": "journal", "psycopg2": "journal"}

# Exemptions, each with its reason (none silent):
# - The root package ``anweddol_actors`` (its ``__init__.py``) may be imported from any layer
#   (``from anweddol_actors import __version__``): it holds package metadata only, and
#   Python initialises it before any submodule anyway, so importing it adds no dependency;
#   if it ever imported something at module level, rule a limits that to cli and rule e
#   reports the cycle cli -> anweddol_actors -> cli.
ROOT_PACKAGE_IMPORTABLE_FROM_ANY_LAYER = True
# Rule g: exception classes exempt from deriving from AnweddolError, {"module:Class": reason}.
EXCEPTION_BASE_EXEMPTIONS: dict[str, str] = {}

_PRAGMA = re.compile(
    r"\bnoqa\b(:\s*[\w, ]+)?|\btype:\s*ignore(\[[^\]]*\])?|\bpragma:.*|\bfmt:\s*\w+|\bisort:\s*\w+",
    re.IGNORECASE,
)


# -- parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    file: str  # importing file, relative to the package's parent directory
    lineno: int
    end_lineno: int
    target: str  # dotted module (project targets resolved as in rule e)
    project: bool
    in_function: bool
    type_checking: bool

    def describe(self) -> str:
        return f"{self.file}:{self.lineno} {self.target}"


@dataclass
class Module:
    name: str
    path: Path
    file: str
    is_package: bool
    tree: ast.Module
    source: str
    imports: list[Import] = field(default_factory=list)
    # module-level names: name -> ("class", ClassDef) | ("import", module)
    # | ("from", module, attr, level-resolved) | ("expr", ast.expr)
    bindings: dict[str, tuple] = field(default_factory=dict)

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass
class Package:
    root: Path
    name: str
    modules: dict[str, Module]
    namespace_dirs: set[str]

    def is_module(self, dotted: str) -> bool:
        return dotted in self.modules or dotted in self.namespace_dirs

    def part(self, dotted: str) -> str | None:
        """The top-level component under the package (``engine`` for ``pkg.engine.x``);
        ``__init__`` for the root package itself."""
        pieces = dotted.split(".")
        if pieces[0] != self.name:
            return None
        return pieces[1] if len(pieces) > 1 else "__init__"

    def resolve_from(self, base: str, name: str) -> str:
        """``from base import name``: the module base.name if it is one, else base."""
        candidate = f"{base}.{name}"
        return candidate if self.is_module(candidate) else base


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    pieces = module.package.split(".")
    base = pieces[: len(pieces) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, package: Package, module: Module) -> None:
        self.package = package
        self.module = module
        self.function_depth = 0
        self.type_checking_depth = 0

    def _add(self, node: ast.AST, target: str) -> None:
        self.module.imports.append(
            Import(
                source=self.module.name,
                file=self.module.file,
                lineno=node.lineno,
                end_lineno=node.end_lineno or node.lineno,
                target=target,
                project=target.split(".")[0] == self.package.name,
                in_function=self.function_depth > 0,
                type_checking=self.type_checking_depth > 0,
            )
        )

    def _scoped(self, node: ast.AST) -> None:
        self.function_depth += 1
        self.generic_visit(node)
        self.function_depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _scoped

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.type_checking_depth += 1
        for statement in node.body:
            self.visit(statement)
        self.type_checking_depth -= 1
        for statement in node.orelse:
            self.visit(statement)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _absolute(self.module, node)
        if base.split(".")[0] != self.package.name:
            self._add(node, base)
            return
        targets = dict.fromkeys(
            base if alias.name == "*" else self.package.resolve_from(base, alias.name)
            for alias in node.names
        )
        for target in targets:
            self._add(node, target)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        dynamic = (isinstance(func, ast.Name) and func.id == "__import__") or (
            isinstance(func, ast.Attribute)
            and func.attr == "import_module"
            and isinstance(func.value, ast.Name)
            and func.value.id == "importlib"
        )
        if (
            dynamic
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith(".")
        ):
            self._add(node, node.args[0].value)
        self.generic_visit(node)


def _module_level_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements run at import time outside functions and classes (into if/try/with)."""
    for statement in body:
        yield statement
        for attribute in ("body", "orelse", "finalbody", "handlers"):
            if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                break
            children = getattr(statement, attribute, None)
            if children:
                yield from _module_level_statements(children)


def _collect_bindings(module: Module) -> None:
    for statement in _module_level_statements(module.tree.body):
        if isinstance(statement, ast.ClassDef):
            module.bindings[statement.name] = ("class", statement)
        elif isinstance(statement, ast.Import):
            for alias in statement.names:
                if alias.asname:
                    module.bindings[alias.asname] = ("import", alias.name)
                else:
                    top = alias.name.split(".")[0]
                    module.bindings[top] = ("import", top)
        elif isinstance(statement, ast.ImportFrom):
            base = _absolute(module, statement)
            for alias in statement.names:
                if alias.name != "*":
                    module.bindings[alias.asname or alias.name] = ("from", base, alias.name)
        elif (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
        ):
            module.bindings[statement.targets[0].id] = ("expr", statement.value)


@functools.cache
def load_package(root: Path) -> Package:
    root = root.resolve()
    package = Package(root=root, name=root.name, modules={}, namespace_dirs=set())
    for directory in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if "__pycache__" not in directory.parts:
            package.namespace_dirs.add(".".join(directory.relative_to(root.parent).parts))
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        pieces = path.relative_to(root.parent).with_suffix("").parts
        is_package = pieces[-1] == "__init__"
        name = ".".join(pieces[:-1] if is_package else pieces)
        source = path.read_text(encoding="utf-8")
        package.modules[name] = Module(
            name=name,
            path=path,
            file=path.relative_to(root.parent).as_posix(),
            is_package=is_package,
            tree=ast.parse(source, filename=str(path)),
            source=source,
        )
    for module in package.modules.values():
        _ImportCollector(package, module).visit(module.tree)
        _collect_bindings(module)
    return package


def _project_imports(package: Package) -> Iterator[tuple[Module, Import]]:
    for module in package.modules.values():
        for record in module.imports:
            if record.project:
                yield module, record


# -- rules a, b, c ---------------------------------------------------------------------------


def check_core_facade(root: Path) -> list[str]:
    """Rule a."""
    package = load_package(root)
    violations = []
    for module, record in _project_imports(package):
        source_part = package.part(module.name)
        if module.path.parent == package.root and module.path.stem in ENTRY_POINTS:
            if package.part(record.target) != "cli":
                violations.append(record.describe())
        elif source_part not in ("core", "cli") and package.part(record.target) == "core":
            violations.append(record.describe())
    return violations


def check_protocol_sans_io(root: Path) -> list[str]:
    """Rule b."""
    package = load_package(root)
    return [
        record.describe()
        for module in package.modules.values()
        if package.part(module.name) == "protocol"
        for record in module.imports
        if record.target.split(".")[0] in PROTOCOL_FORBIDDEN
    ]


def check_exclusive_imports(root: Path) -> list[str]:
    """Rule c."""
    package = load_package(root)
    violations = []
    for module in package.modules.values():
        for record in module.imports:
            owner = EXCLUSIVE_IMPORTS.get(record.target.split(".")[0])
            if owner is not None and package.part(module.name) != owner:
                violations.append(f"{record.describe()} (only {owner}/ may)")
    return violations


# -- rule d ----------------------------------------------------------------------------------


def _rank(package: Package, dotted: str) -> int | None:
    """Layer index of a module (0 = top); -1 for the entry points; None if unplaced."""
    part = package.part(dotted)
    if part == "__init__" or part == "__main__":
        return -1
    return RANK.get(part)


def check_layers(root: Path) -> list[str]:
    """Rule d."""
    package = load_package(root)
    violations = []
    for module in package.modules.values():
        if _rank(package, module.name) is None:
            violations.append(
                f"{module.file}:1 {module.name} (top-level "
                f"'{package.part(module.name)}' is in no layer: place it in LAYERS)"
            )
    for module, record in _project_imports(package):
        source_rank = _rank(package, module.name)
        target_part = package.part(record.target)
        if source_rank is None:
            continue  # reported above
        if target_part == "__init__" and ROOT_PACKAGE_IMPORTABLE_FROM_ANY_LAYER:
            continue
        target_rank = _rank(package, record.target)
        if target_rank is None:
            violations.append(f"{record.describe()} (target in no layer)")
        elif target_rank < source_rank:
            violations.append(f"{record.describe()} (upward import)")
        elif (
            target_rank == source_rank
            and target_part != package.part(module.name)
            and source_rank != SIBLING_LAYER
        ):
            violations.append(f"{record.describe()} (sibling import outside the allowed layer)")
    return violations


# -- rule e ----------------------------------------------------------------------------------


def import_graph(package: Package) -> dict[str, dict[str, Import]]:
    """Module-level, non-TYPE_CHECKING project imports: source -> {target: first import}."""
    graph: dict[str, dict[str, Import]] = {name: {} for name in package.modules}
    for module, record in _project_imports(package):
        if record.in_function or record.type_checking:
            continue
        if record.target == module.name or record.target not in package.modules:
            continue
        graph[module.name].setdefault(record.target, record)
    return graph


def _strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:  # recursion depth is bounded by the package size
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _cycle_in(graph: dict[str, dict[str, Import]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, as [m0, m1, ..., m0]."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node]):
                if successor not in members:
                    continue
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"no cycle in component {component}")


def find_cycles(root: Path) -> list[list[str]]:
    graph = import_graph(load_package(root))
    return [
        _cycle_in(graph, component)
        for component in _strongly_connected(graph)
        if len(component) > 1
    ]


def check_cycles(root: Path) -> list[str]:
    """Rule e: one entry per strongly connected component, with the import lines."""
    graph = import_graph(load_package(root))
    violations = []
    for cycle in find_cycles(root):
        edges = "".join(
            f"\n      {graph[a][b].describe()}" for a, b in zip(cycle, cycle[1:], strict=False)
        )
        violations.append("cycle " + " -> ".join(cycle) + edges)
    return violations


def check_package_cycles(root: Path) -> list[str]:
    """Rule e, between top-level packages: two packages that import each other, by any
    import at all (in a function, under TYPE_CHECKING), read neither above nor below the
    other, even inside the layer whose members may import each other."""
    package = load_package(root)
    graph: dict[str, dict[str, Import]] = {}
    for module, record in _project_imports(package):
        source, target = package.part(module.name), package.part(record.target)
        if target in (source, "__init__"):
            continue
        graph.setdefault(source, {}).setdefault(target, record)
        graph.setdefault(target, {})
    violations = []
    for component in _strongly_connected(graph):
        if len(component) < 2:
            continue
        cycle = _cycle_in(graph, component)
        edges = "".join(
            f"\n      {graph[a][b].describe()}" for a, b in zip(cycle, cycle[1:], strict=False)
        )
        violations.append("packages " + " <-> ".join(cycle[:-1]) + edges)
    return violations


# -- rule f ----------------------------------------------------------------------------------


def _comments(source: str) -> tuple[dict[int, list[str]], set[int]]:
    """Comment texts per line, and the lines holding code tokens."""
    comments: dict[int, list[str]] = {}
    code_lines: set[int] = set()
    ignored = {tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments.setdefault(token.start[0], []).append(token.string)
        elif token.type not in ignored and token.type != tokenize.ENDMARKER:
            code_lines.update(range(token.start[0], token.end[0] + 1))
    return comments, code_lines


def _is_reason(comment: str) -> bool:
    return bool(re.search(r"\w", _PRAGMA.sub("", comment.lstrip("#"))))


def check_function_imports_explained(root: Path) -> list[str]:
    """Rule f."""
    package = load_package(root)
    violations = []
    for module in package.modules.values():
        comments, code_lines = _comments(module.source)
        # A run of consecutive imports is one statement of intent: the reason above its
        # first line covers the whole run.
        explained_ends: set[int] = set()
        for record in sorted(module.imports, key=lambda r: r.lineno):
            if not record.in_function:
                continue
            own = [
                c
                for line in range(record.lineno, record.end_lineno + 1)
                for c in comments.get(line, [])
            ]
            above = record.lineno - 1
            above_comments = comments.get(above, []) if above not in code_lines else []
            explained = any(_is_reason(c) for c in own + above_comments) or above in explained_ends
            if explained:
                explained_ends.add(record.end_lineno)
            if record.project and not explained:
                violations.append(
                    f"{record.describe()} (function-level import without a reason comment)"
                )
    return violations


# -- rule g ----------------------------------------------------------------------------------

# A resolved name: ("class", module, ClassDef) | ("module", dotted) | ("builtin", name)
# | ("external", dotted) | None when it cannot be resolved.
Ref = tuple | None


class _Resolver:
    def __init__(self, package: Package) -> None:
        self.package = package

    def symbol(self, module_name: str, name: str, seen: frozenset = frozenset()) -> Ref:
        """What ``module_name.name`` is."""
        key = (module_name, name)
        if key in seen:
            return None
        seen = seen | {key}
        module = self.package.modules.get(module_name)
        if module is None:
            if self.package.is_module(f"{module_name}.{name}"):
                return ("module", f"{module_name}.{name}")
            return None
        binding = module.bindings.get(name)
        if binding is None:
            if self.package.is_module(f"{module_name}.{name}"):
                return ("module", f"{module_name}.{name}")
            return None
        return self._binding(module, binding, seen)

    def _binding(self, module: Module, binding: tuple, seen: frozenset) -> Ref:
        kind = binding[0]
        if kind == "class":
            return ("class", module.name, binding[1])
        if kind == "import":
            dotted = binding[1]
            if dotted.split(".")[0] == self.package.name:
                return ("module", dotted)
            return ("external", dotted)
        if kind == "from":
            base, attr = binding[1], binding[2]
            if base.split(".")[0] != self.package.name:
                return ("external", f"{base}.{attr}")
            if self.package.is_module(f"{base}.{attr}"):
                return ("module", f"{base}.{attr}")
            return self.symbol(base, attr, seen)
        return self.expression(module, binding[1], seen)

    def expression(self, module: Module, node: ast.expr, seen: frozenset = frozenset()) -> Ref:
        if isinstance(node, ast.Subscript):
            return self.expression(module, node.value, seen)
        if isinstance(node, ast.Name):
            binding = module.bindings.get(node.id)
            if binding is not None:
                return self._binding(module, binding, seen)
            local = [
                n
                for n in ast.walk(module.tree)
                if isinstance(n, ast.ClassDef) and n.name == node.id
            ]
            if len(local) == 1:  # a class defined in a function or class of this module
                return ("class", module.name, local[0])
            if isinstance(getattr(builtins, node.id, None), type):
                return ("builtin", node.id)
            return None
        if isinstance(node, ast.Attribute):
            base = self.expression(module, node.value, seen)
            if base is None:
                return None
            if base[0] == "module":
                return self.symbol(base[1], node.attr, seen)
            if base[0] == "external":
                return ("external", f"{base[1]}.{node.attr}")
        return None


def _external_object(dotted: str) -> object:
    """Import the longest importable prefix of ``dotted`` and get the rest as attributes."""
    pieces = dotted.split(".")
    for cut in range(len(pieces), 0, -1):
        try:
            value = importlib.import_module(".".join(pieces[:cut]))
        except ImportError:
            continue
        for attribute in pieces[cut:]:
            value = getattr(value, attribute)
        return value
    raise ImportError(dotted)


def _class_key(ref: tuple) -> tuple[str, int]:
    return (ref[1], ref[2].lineno)


def check_exception_base(root: Path) -> list[str]:
    """Rule g."""
    package = load_package(root)
    resolver = _Resolver(package)
    violations: list[str] = []
    root_name = f"{package.name}.errors.AnweddolError"
    root_ref = resolver.symbol(f"{package.name}.errors", "AnweddolError")
    if root_ref is None or root_ref[0] != "class":
        root_ref = None
        violations.append(f"{package.name}/errors.py:1 {root_name} is not defined")

    def bases(ref: tuple) -> list[tuple[ast.expr, Ref]]:
        module = package.modules[ref[1]]
        return [(base, resolver.expression(module, base)) for base in ref[2].bases]

    @functools.cache
    def is_exception(kind: str, key: object) -> bool:
        if kind == "builtin":
            value = getattr(builtins, key)
            return isinstance(value, type) and issubclass(value, BaseException)
        if kind == "external":
            try:
                value = _external_object(key)
            except (ImportError, AttributeError):
                return False  # reported by the caller
            return isinstance(value, type) and issubclass(value, BaseException)
        return False

    memo: dict[tuple[str, int], tuple[bool, bool]] = {}

    def classify(ref: tuple) -> tuple[bool, bool]:
        """(is an exception, derives from the root) for a project class."""
        key = _class_key(ref)
        if key in memo:
            return memo[key]
        memo[key] = (False, False)  # a base cycle cannot help
        exception = derived = root_ref is not None and key == _class_key(root_ref)
        for _node, base in bases(ref):
            if base is None:
                continue
            if base[0] == "class":
                base_exception, base_derived = classify(base)
                exception |= base_exception
                derived |= base_derived
            elif base[0] in ("builtin", "external"):
                exception |= is_exception(base[0], base[1])
        memo[key] = (exception, derived)
        return memo[key]

    for module in package.modules.values():
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.ClassDef):
                continue
            ref = ("class", module.name, node)
            where = f"{module.file}:{node.lineno} {node.name}"
            written = ", ".join(ast.unparse(base) for base in node.bases)
            for base_node, base in bases(ref):
                if base is None and not isinstance(base_node, ast.Call):
                    violations.append(
                        f"{where}({written}): cannot resolve base {ast.unparse(base_node)}"
                    )
                elif base is not None and base[0] == "external":
                    try:
                        _external_object(base[1])
                    except (ImportError, AttributeError):
                        violations.append(f"{where}({written}): cannot import base {base[1]}")
            exception, derived = classify(ref)
            if (
                exception
                and not derived
                and f"{module.name}:{node.name}" not in EXCEPTION_BASE_EXEMPTIONS
            ):
                violations.append(f"{where}({written}) does not derive from {root_name}")
    return violations


# -- the contract on the real package ----------------------------------------------------------


def _report(title: str, violations: list[str]) -> str:
    return f"{title} ({len(violations)}):\n  " + "\n  ".join(violations)


def test_package_is_found():
    package = load_package(PACKAGE_DIR)
    assert f"{package.name}.cli" in package.modules
    assert len(package.modules) > 20


def test_only_cli_imports_core():
    violations = check_core_facade(PACKAGE_DIR)
    assert not violations, _report(
        "imports of anweddol_actors.core outside core/ and cli/ (or entry points importing "
        "more than cli)",
        violations,
    )


def test_protocol_is_sans_io():
    violations = check_protocol_sans_io(PACKAGE_DIR)
    assert not violations, _report("I/O or framework imports in protocol/", violations)


def test_libvirt_and_peewee_stay_in_their_packages():
    violations = check_exclusive_imports(PACKAGE_DIR)
    assert not violations, _report("libvirt/peewee imported outside their package", violations)


def test_layers():
    violations = check_layers(PACKAGE_DIR)
    assert not violations, _report("layering violations", violations)


def test_no_import_cycles():
    violations = check_cycles(PACKAGE_DIR)
    assert not violations, _report("import cycles (module-level imports)", violations)


def test_no_two_packages_import_each_other():
    violations = check_package_cycles(PACKAGE_DIR)
    assert not violations, _report("packages importing each other", violations)


def test_checker_flags_two_packages_importing_each_other(tmp_path):
    root = make_package(
        tmp_path,
        {
            "config/uses.py": "from anweddol_actors.policy import rules\n",
            "policy/rules.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from anweddol_actors.config import uses\n"
            ),
        },
    )
    violations = check_package_cycles(root)
    assert len(violations) == 1 and "config" in violations[0] and "policy" in violations[0]
    assert check_package_cycles(make_package(tmp_path / "good")) == []


def test_checker_takes_one_reason_for_a_run_of_imports(tmp_path):
    root = make_package(
        tmp_path,
        {
            "engine/late.py": (
                "def f():\n"
                "    # loaded on first use: the command must start fast\n"
                "    from anweddol_actors.engine import run\n"
                "    import anweddol_actors.protocol.frames\n"
                "\n"
                "    from anweddol_actors.actors import worker\n"
            )
        },
    )
    assert check_function_imports_explained(root) == [
        "anweddol_actors/engine/late.py:6 anweddol_actors.actors.worker"
        " (function-level import without a reason comment)"
    ]


def test_function_level_imports_say_why():
    violations = check_function_imports_explained(PACKAGE_DIR)
    assert not violations, _report("function-level project imports without a reason", violations)


def test_one_exception_base():
    violations = check_exception_base(PACKAGE_DIR)
    assert not violations, _report("exception classes outside AnweddolError", violations)


# -- the checkers on fake packages -------------------------------------------------------------

# A small package that keeps every rule: each bad case below changes or adds one file.
GOOD_TREE = {
    "__init__.py": '__version__ = "0"\n',
    "__main__.py": "from anweddol_actors.cli import main\n",
    "errors.py": "class AnweddolError(Exception):\n    pass\n",
    "cli/__init__.py": (
        "from anweddol_actors import __version__\n"
        "from anweddol_actors.core import facade\n"
        "from anweddol_actors.errors import AnweddolError\n"
        "\n"
        "class CliError(AnweddolError):\n"
        "    pass\n"
        "\n"
        "def main():\n"
        "    # deferred: the engine is heavy and --help does not need it\n"
        "    from anweddol_actors.engine import run\n"
        "    return run\n"
    ),
    "core/facade.py": "from anweddol_actors.engine.run import start\n",
    "engine/run.py": (
        "from typing import TYPE_CHECKING\n"
        "\n"
        "from anweddol_actors.actors import worker\n"
        "from anweddol_actors.protocol import frames\n"
        "\n"
        "if TYPE_CHECKING:\n"
        "    from anweddol_actors.engine.late import Thing  # annotations only: no cycle\n"
        "\n"
        "def start():\n"
        "    import anweddol_actors.engine.late  # noqa: F401 - cycle breaker: late imports run\n"
    ),
    "engine/late.py": "from anweddol_actors.engine import run\n",
    "actors/worker.py": (
        "import pykka\n"
        "\n"
        "from anweddol_actors.hypervisor.conn import Hypervisor\n"
        "from anweddol_actors.journal import store\n"
    ),
    "transport/listener.py": (
        "import socket\n\nfrom anweddol_actors.protocol.frames import decode\n"
    ),
    "hypervisor/__init__.py": "from anweddol_actors.hypervisor.conn import Hypervisor\n",
    "hypervisor/conn.py": (
        "import libvirt\n"
        "\n"
        "from anweddol_actors import errors\n"
        "\n"
        "class HvError(errors.AnweddolError):\n"
        "    pass\n"
        "\n"
        "class Hypervisor:\n"
        "    pass\n"
    ),
    "guest/shell.py": (
        "from anweddol_actors.hypervisor import conn as hv\n"
        "from .helpers import Timeout as GuestTimeoutBase\n"
        "\n"
        "class GuestTimeout(GuestTimeoutBase, TimeoutError):\n"
        "    pass\n"
        "\n"
        "def probe():\n"
        "    class Local(hv.HvError):\n"
        "        pass\n"
        "    return Local\n"
    ),
    "guest/helpers.py": (
        "from anweddol_actors.errors import AnweddolError\n"
        "\n"
        "Alias = AnweddolError\n"
        "\n"
        "class Timeout(Alias):\n"
        "    pass\n"
    ),
    "journal/store.py": "import peewee\n\nclass Field(peewee.TextField):\n    pass\n",
    "protocol/frames.py": "import json\n\ndef decode(data):\n    return json.loads(data)\n",
}

BAD_CASES = {
    # rule a
    "a-engine-imports-core": (
        check_core_facade,
        {"engine/late.py": "from anweddol_actors.core.facade import x\n"},
        ["anweddol_actors/engine/late.py:1 anweddol_actors.core.facade"],
    ),
    "a-from-package-import-core": (
        check_core_facade,
        {"actors/more.py": "def f():\n    from anweddol_actors import core  # why\n"},
        ["anweddol_actors/actors/more.py:2 anweddol_actors.core"],
    ),
    "a-main-imports-engine": (
        check_core_facade,
        {"__main__.py": "from anweddol_actors.engine import run\n"},
        ["anweddol_actors/__main__.py:1 anweddol_actors.engine.run"],
    ),
    # rule b
    "b-protocol-imports-threading-and-socket": (
        check_protocol_sans_io,
        {
            "protocol/frames.py": (
                "import threading\n"
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from socket import socket\n"
                "def f():\n"
                "    import asyncio.streams\n"
            )
        },
        [
            "anweddol_actors/protocol/frames.py:1 threading",
            "anweddol_actors/protocol/frames.py:4 socket",
            "anweddol_actors/protocol/frames.py:6 asyncio.streams",
        ],
    ),
    "b-protocol-dynamic-import-of-pykka": (
        check_protocol_sans_io,
        {"protocol/frames.py": "import importlib\nA = importlib.import_module('pykka')\n"},
        ["anweddol_actors/protocol/frames.py:2 pykka"],
    ),
    # rule c
    "c-libvirt-and-peewee-elsewhere": (
        check_exclusive_imports,
        {"engine/late.py": "import libvirt as lv\nfrom peewee import Model\n"},
        [
            "anweddol_actors/engine/late.py:1 libvirt (only hypervisor/ may)",
            "anweddol_actors/engine/late.py:2 peewee (only journal/ may)",
        ],
    ),
    # rule d
    "d-upward-import-in-type-checking": (
        check_layers,
        {
            "protocol/types.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from anweddol_actors.journal.store import Field\n"
            )
        },
        ["anweddol_actors/protocol/types.py:3 anweddol_actors.journal.store (upward import)"],
    ),
    "d-siblings-outside-the-allowed-layer": (
        check_layers,
        {"actors/more.py": "from anweddol_actors.transport import listener\n"},
        [
            "anweddol_actors/actors/more.py:1 anweddol_actors.transport.listener "
            "(sibling import outside the allowed layer)"
        ],
    ),
    "d-unplaced-package": (
        check_layers,
        {"webapp/app.py": "from anweddol_actors.protocol import frames\n"},
        [
            "anweddol_actors/webapp/__init__.py:1 anweddol_actors.webapp (top-level 'webapp' is "
            "in no layer: place it in LAYERS)",
            "anweddol_actors/webapp/app.py:1 anweddol_actors.webapp.app (top-level 'webapp' is "
            "in no layer: place it in LAYERS)",
        ],
    ),
    "d-relative-import-upward": (
        check_layers,
        {"errors.py": "from .engine import run\nclass AnweddolError(Exception):\n    pass\n"},
        ["anweddol_actors/errors.py:1 anweddol_actors.engine.run (upward import)"],
    ),
    # rule e
    "e-two-module-cycle": (
        check_cycles,
        {
            "protocol/frames.py": "from anweddol_actors.protocol.codec import x\n",
            "protocol/codec.py": "from anweddol_actors.protocol import frames\n",
        },
        [
            "cycle anweddol_actors.protocol.codec -> anweddol_actors.protocol.frames -> "
            "anweddol_actors.protocol.codec"
            "\n      anweddol_actors/protocol/codec.py:1 anweddol_actors.protocol.frames"
            "\n      anweddol_actors/protocol/frames.py:1 anweddol_actors.protocol.codec"
        ],
    ),
    "e-cycle-through-package-init": (
        check_cycles,
        {
            "engine/late.py": (
                "try:\n    from anweddol_actors.engine import run\nexcept ImportError:\n    pass\n"
            ),
            "engine/run.py": "from anweddol_actors.engine import late\n",
        },
        [
            "cycle anweddol_actors.engine.late -> anweddol_actors.engine.run -> "
            "anweddol_actors.engine.late"
            "\n      anweddol_actors/engine/late.py:2 anweddol_actors.engine.run"
            "\n      anweddol_actors/engine/run.py:1 anweddol_actors.engine.late"
        ],
    ),
    # rule f
    "f-function-import-without-comment": (
        check_function_imports_explained,
        {
            "engine/late.py": (
                "x = 1  # a comment on the code line above does not count\n"
                "def f():\n"
                "    from anweddol_actors.engine import run\n"
                "    # a comment two lines above does not count\n"
                "\n"
                "    import anweddol_actors.protocol.frames\n"
                "    from anweddol_actors.actors import (\n"
                "        worker,  # noqa: F401\n"
                "    )\n"
                "    import json\n"
            )
        },
        [
            "anweddol_actors/engine/late.py:3 anweddol_actors.engine.run "
            "(function-level import without a reason comment)",
            "anweddol_actors/engine/late.py:6 anweddol_actors.protocol.frames "
            "(function-level import without a reason comment)",
            "anweddol_actors/engine/late.py:7 anweddol_actors.actors.worker "
            "(function-level import without a reason comment)",
        ],
    ),
    "f-method-import": (
        check_function_imports_explained,
        {"engine/late.py": "class A:\n    def m(self):\n        from . import run\n"},
        [
            "anweddol_actors/engine/late.py:3 anweddol_actors.engine.run "
            "(function-level import without a reason comment)"
        ],
    ),
    # rule g
    "g-builtin-base-only": (
        check_exception_base,
        {
            "journal/store.py": "class JournalError(RuntimeError):\n    pass\n"
            "class Sub(JournalError):\n    pass\n"
        },
        [
            "anweddol_actors/journal/store.py:1 JournalError(RuntimeError) does not derive "
            "from anweddol_actors.errors.AnweddolError",
            "anweddol_actors/journal/store.py:3 Sub(JournalError) does not derive "
            "from anweddol_actors.errors.AnweddolError",
        ],
    ),
    "g-imported-project-base-outside-root": (
        check_exception_base,
        {
            "protocol/frames.py": "class ProtocolError(Exception):\n    pass\n",
            "client/blocking.py": "from anweddol_actors.protocol.frames import ProtocolError as P\n"
            "class ClientError(P):\n    pass\n",
        },
        [
            "anweddol_actors/client/blocking.py:2 ClientError(P) does not derive "
            "from anweddol_actors.errors.AnweddolError",
            "anweddol_actors/protocol/frames.py:1 ProtocolError(Exception) does not derive "
            "from anweddol_actors.errors.AnweddolError",
        ],
    ),
    "g-external-exception-base": (
        check_exception_base,
        {"config/load.py": "import json\nclass ConfigError(json.JSONDecodeError):\n    pass\n"},
        [
            "anweddol_actors/config/load.py:2 ConfigError(json.JSONDecodeError) does not derive "
            "from anweddol_actors.errors.AnweddolError"
        ],
    ),
    "g-no-errors-module": (
        check_exception_base,
        {"errors.py": None},
        [
            "anweddol_actors/errors.py:1 anweddol_actors.errors.AnweddolError is not defined",
            "anweddol_actors/cli/__init__.py:5 CliError(AnweddolError): cannot resolve base "
            "AnweddolError",
            "anweddol_actors/guest/helpers.py:5 Timeout(Alias): cannot resolve base Alias",
            "anweddol_actors/guest/shell.py:4 GuestTimeout(GuestTimeoutBase, TimeoutError) "
            "does not derive from anweddol_actors.errors.AnweddolError",
            "anweddol_actors/hypervisor/conn.py:5 HvError(errors.AnweddolError): cannot resolve "
            "base errors.AnweddolError",
        ],
    ),
}

CHECKERS = {
    "a": check_core_facade,
    "b": check_protocol_sans_io,
    "c": check_exclusive_imports,
    "d": check_layers,
    "e": check_cycles,
    "f": check_function_imports_explained,
    "g": check_exception_base,
}


def make_package(tmp_path: Path, changes: dict[str, str | None] | None = None) -> Path:
    """GOOD_TREE with ``changes`` applied (None deletes a file), as tmp_path/anweddol_actors."""
    files = {**GOOD_TREE, **(changes or {})}
    root = tmp_path / "anweddol_actors"
    for relative, text in files.items():
        if text is None:
            continue
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for directory in [root, *root.rglob("*")]:
        if directory.is_dir() and not (directory / "__init__.py").exists():
            (directory / "__init__.py").write_text("")
    return root


@pytest.mark.parametrize("rule", sorted(CHECKERS))
def test_checker_accepts_good_tree(tmp_path, rule):
    assert CHECKERS[rule](make_package(tmp_path)) == []


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_checker_flags_bad_tree(tmp_path, case):
    checker, changes, expected = BAD_CASES[case]
    assert sorted(checker(make_package(tmp_path, changes))) == sorted(expected)


def test_checker_follows_a_reexported_root(tmp_path):
    # AnweddolError defined at the bottom (errors.py) and re-exported by protocol/base.py:
    # rules d and g both hold, and the name is followed through the re-export.
    root = make_package(
        tmp_path,
        {
            "errors.py": "class AnweddolError(Exception):\n    pass\n",
            "protocol/base.py": "from anweddol_actors.errors import AnweddolError\n",
            "protocol/frames.py": (
                "from anweddol_actors.protocol.base import AnweddolError\n"
                "class ProtocolError(AnweddolError):\n    pass\n"
            ),
        },
    )
    assert check_exception_base(root) == []
    assert check_layers(root) == []


def test_checker_reports_a_longer_cycle_as_a_list_of_modules(tmp_path):
    root = make_package(
        tmp_path,
        {
            "lifecycle/a.py": "from anweddol_actors.lifecycle import b\n",
            "lifecycle/b.py": "import anweddol_actors.lifecycle.c\n",
            "lifecycle/c.py": "from anweddol_actors.lifecycle.a import thing\n",
            "lifecycle/d.py": "from anweddol_actors.lifecycle import a\n",  # into it, not on it
        },
    )
    assert find_cycles(root) == [
        [
            "anweddol_actors.lifecycle.a",
            "anweddol_actors.lifecycle.b",
            "anweddol_actors.lifecycle.c",
            "anweddol_actors.lifecycle.a",
        ]
    ]


# -- the actor-leak fixture of conftest.py -----------------------------------------------------
# (Here because this change may touch only tests/conftest.py and this module.)

LEAKY_TESTS = """
    import pykka


    class ContainerActor(pykka.ThreadingActor):
        pass


    class ForwarderActor(pykka.ThreadingActor):
        pass


    def test_a_leaks_two_actors():
        ContainerActor.start()
        ForwarderActor.start()


    def test_b_starts_clean_and_stops_late():
        assert pykka.ActorRegistry.get_all() == []
        ref = ContainerActor.start()
        ref.stop(block=False)  # stops during the grace period: not a leak


    def test_c_stops_its_actor():
        ContainerActor.start().stop()
"""


def test_conftest_fails_a_test_that_leaks_actors(pytester, monkeypatch):
    monkeypatch.setenv("ANWEDDOL_LEAK_TIMEOUT", "0.5")
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_a_leaks_two_actors*",
            "*test left 2 live actors: ContainerActor, ForwarderActor*",
        ]
    )
    # The inner run shared this process's registry: its fixture stopped what it leaked.
    assert pykka.ActorRegistry.get_all() == []


LEAKY_VM_TESTS = """
    import uuid

    import pytest

    from anweddol_actors.hypervisor import DomainSpec, Hypervisor

    URI = "test:///default"


    def spec():
        return DomainSpec(
            uuid=str(uuid.uuid4()), memory_mib=256, vcpus=1, iso_path="/srv/c.iso",
            domain_type="test", network="user", forward_port=20022,
        )


    # test:///default's state lives while a connection is open: hold one across the tests.
    held = []


    @pytest.mark.vm
    def test_a_leaks_a_domain():
        held.append(Hypervisor(URI))
        held[0].create_domain(spec())


    @pytest.mark.vm
    def test_b_destroys_its_domain():
        with Hypervisor(URI) as hv:
            hv.destroy_domain(hv.create_domain(spec()).uuid)


    def test_c_the_leak_was_destroyed():
        with held.pop() as hv:
            assert hv.list_marked() == []
"""


def test_conftest_fails_a_vm_test_that_leaks_a_domain(pytester, monkeypatch):
    # libvirt's in-process test driver stands in for qemu:///system: no daemon, no guest.
    monkeypatch.setenv("ANWEDDOL_LEAK_TIMEOUT", "0.5")
    monkeypatch.setenv("ANWEDDOL_VM_LEAK_URI", "test:///default")
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    vm: boots VMs\n")
    pytester.makepyfile(test_leaky_vm=LEAKY_VM_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_a_leaks_a_domain*",
            "*test left 1 marked domain (destroyed): anweddol-* (*)*",
        ]
    )
