"""The shape rules of ``gateway/``, enforced (as the sandbox's isolation test does).

- The pure layers (the call declarations, the translation helpers, the neutral model, the
  binding rule and the legacy wire format) import no store, no engine, no REST client, no
  Twisted and no SQLAlchemy: checked in a fresh interpreter, so an import hidden anywhere in
  their import graph counts.
- No import cycle anywhere in ``gateway/``: a static graph of every ``import`` statement
  (function-level ones included: a cycle hidden in a function is still a cycle).
- Data flows one way (docs/architecture.md#the-layers): the wire format reaches nothing
  above it, the call declarations reach no edge, engine or port, the engine no edge.
- One composition root: only the entry points (``gateway.service``'s ``Gateway``, the CLI)
  import ``gateway.app``; everything else receives the parts it uses.
- Each call's whole declaration is one module, registered once.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.calls import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gateway"

PURE = ["gateway.calls", "gateway.translate", "gateway.model", "gateway.binding", "gateway.wire",
        "gateway.recurring.cart"]
STATEFUL = ("twisted", "sqlalchemy", "treq", "alembic", "psycopg", "gateway.store",
            "gateway.engine", "gateway.om", "gateway.service", "gateway.app",
            "gateway.sandbox")


def test_pure_layers_import_nothing_stateful() -> None:
    code = ("import importlib, json, sys, pkgutil\n"
            f"for name in {PURE!r}:\n"
            "    mod = importlib.import_module(name)\n"
            "    for info in pkgutil.walk_packages(getattr(mod, '__path__', []), name + '.'):\n"
            "        importlib.import_module(info.name)\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    loaded = json.loads(out)
    bad = [m for m in loaded if m.split(".")[0] in STATEFUL or m.startswith(STATEFUL)]
    assert not bad, f"pure layers pulled in: {bad}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
                node.body = []  # typing-only imports are not imports at run time
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                    + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            for target in targets:
                if target in modules and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def test_no_import_cycles_in_gateway() -> None:
    graph = _import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


#: package -> what it must never reach, directly or through anything it imports.
BELOW = {
    "gateway.wire": ("gateway.edge", "gateway.calls", "gateway.engine", "gateway.store",
                     "gateway.om", "gateway.web", "gateway.recurring", "gateway.console",
                     "gateway.tools", "gateway.cli", "gateway.app", "gateway.service"),
    "gateway.calls": ("gateway.edge", "gateway.engine", "gateway.store", "gateway.om",
                      "gateway.web", "gateway.recurring", "gateway.app", "gateway.service"),
    "gateway.engine": ("gateway.edge", "gateway.web", "gateway.recurring", "gateway.console",
                       "gateway.tools", "gateway.cli", "gateway.app", "gateway.service"),
    "gateway.web": ("gateway.edge", "gateway.wire", "gateway.calls", "gateway.engine",
                    "gateway.store", "gateway.om", "gateway.app", "gateway.service"),
}


@pytest.mark.parametrize("package", sorted(BELOW))
def test_data_flows_one_way(package: str) -> None:
    graph = _import_graph()
    bad = {m: sorted(t for t in _reachable(graph, m) if _in(t, BELOW[package]))
           for m in graph if _in(m, (package,))}
    assert not {m: r for m, r in bad.items() if r}, f"{package} reaches above itself"


def test_only_the_entry_points_import_the_composition_root() -> None:
    """``gateway.app`` builds every part; the listeners, tools and services receive the
    parts they use as arguments, never the whole ``Components``."""
    graph = _import_graph()
    importers = sorted(m for m, targets in graph.items() if "gateway.app" in targets)
    assert importers and all(m == "gateway.service" or _in(m, ("gateway.cli",))
                             for m in importers), importers


@pytest.mark.parametrize("name", sorted(REGISTRY.served))
def test_each_served_call_is_declared_in_one_module(name: str) -> None:
    """The declaration's decode, plan, reply and call type live in the call's own module
    (send_invoice shares email_invoice's digest and reply: a reuse, named in its module)."""
    spec = REGISTRY.spec(name)
    home = f"gateway.calls.{name}"
    assert spec.call_type.__module__ == home
    assert spec.decode.__module__ == home and spec.plan.__module__ == home
    assert (ROOT / "gateway" / "calls" / f"{name}.py").exists()
