"""The layering of the code, read from the import statements (``ast``; nothing is imported).

Layers, lowest first; a module may import its own layer and the ones below, never above:

    foundation  quiver.errors, types, params, metrics, validation, recall
    engine      quiver.engine.*      codes, kernels, graph, search, store, VamanaIndex
    quality     quiver.quality.*     diagnosis and calibration (use the engine)
    index       quiver.index         the public Index: engine + quality
    db          quiver.db.*          collections, WAL, filters, planner, request
    client      quiver.client        the HTTP client (speaks the db layer's request)
    cluster     quiver.cluster       sharded collections on Ray (the only importer of ray)
    package     quiver               re-exports
    server      quiver.server.*      the HTTP service and the CLI (server/)

The library (quiver/) never imports the server or the benchmarks, and there are no import
cycles (imports under ``if TYPE_CHECKING:`` are type hints, not dependencies). The benchmark
harness (bench/ outside bench/experiments/) imports no private quiver name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = (
    "foundation", "engine", "quality", "index", "db", "client", "cluster", "package", "server",
)  # fmt: skip
FOUNDATION = {"errors", "types", "params", "metrics", "validation", "recall"}


def module_name(path: Path) -> str:
    """Dotted name of a source file (server/ is installed as quiver.server)."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "server":
        parts = ["quiver", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "quiver":
        return None
    if len(parts) == 1:
        return "package"
    head = parts[1]
    if head in FOUNDATION:
        return "foundation"
    return {
        "engine": "engine",
        "quality": "quality",
        "index": "index",
        "db": "db",
        "client": "client",
        "cluster": "cluster",
        "server": "server",
    }.get(head)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imports_of(path: Path, known: set[str]) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) of every import in ``path``, resolved to
    known modules where ``from package import module`` names a module."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_nodes(tree)
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            out += [(s, [], node.lineno) for s in subs]
            rest = [n for n in names if f"{target}.{n}" not in known]
            if rest or not subs:
                out.append((target, rest, node.lineno))
    return out


def source_files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py") if ".venv" not in p.parts)


LIBRARY = source_files("quiver", "server")
KNOWN = {module_name(p) for p in LIBRARY}


def dependency_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in LIBRARY:
        me = module_name(path)
        deps = graph.setdefault(me, set())
        for target, _, _ in imports_of(path, KNOWN):
            if target in KNOWN and target != me:
                deps.add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_a_cycle_and_a_package_parent() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert layer_of("quiver.engine.bq") == "engine" and layer_of("quiver.server.cli") == "server"
    assert layer_of("quiver") == "package" and layer_of("numpy") is None


def test_no_import_cycle_in_the_library() -> None:
    assert cycles(dependency_graph()) == []


def test_layers_only_point_down() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    wrong = []
    for module, deps in dependency_graph().items():
        mine = layer_of(module)
        for dep in deps:
            theirs = layer_of(dep)
            if mine and theirs and rank[theirs] > rank[mine]:
                wrong.append(f"{module} ({mine}) imports {dep} ({theirs})")
    assert wrong == []


def test_library_never_imports_the_server_or_the_benchmarks() -> None:
    wrong = []
    for path in source_files("quiver"):
        text = path.read_text()
        for target, _, line in imports_of(path, KNOWN):
            if target.split(".")[0] == "bench" or target.startswith("quiver.server"):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
        if "importlib" in text and "bench" in text:
            wrong.append(f"{path.relative_to(ROOT)} may load bench/ through importlib")
    assert wrong == []


def test_only_the_cluster_package_imports_ray() -> None:
    wrong = [
        f"{p.relative_to(ROOT)}:{line}"
        for p in source_files("quiver", "server")
        for target, _, line in imports_of(p, KNOWN)
        if target.split(".")[0] == "ray" and "cluster" not in p.relative_to(ROOT).parts
    ]
    assert wrong == []
    assert layer_of("quiver.cluster.node") == "cluster"


def test_server_never_imports_the_benchmarks() -> None:
    wrong = [
        f"{p.relative_to(ROOT)}:{line}"
        for p in source_files("server")
        for target, _, line in imports_of(p, KNOWN)
        if target.split(".")[0] == "bench"
    ]
    assert wrong == []


def _private_uses(path: Path) -> list[str]:
    """Private quiver names a file imports or reads as ``<quiver module>._name``."""
    tree = ast.parse(path.read_text())
    quiver_aliases = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("quiver"):
            for a in node.names:
                if a.name.startswith("_"):
                    found.append(f"{node.module}.{a.name}")
                elif not a.name[:1].isupper():
                    quiver_aliases.add(a.asname or a.name)  # a module or function
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("quiver"):
                    quiver_aliases.add((a.asname or a.name).split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name | ast.Attribute)
            and ast.unparse(node.value).split(".")[0] in quiver_aliases
        ):
            found.append(ast.unparse(node))
    return found


HARNESS = [p for p in source_files("bench") if "experiments" not in p.relative_to(ROOT).parts]


@pytest.mark.parametrize("path", HARNESS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_harness_uses_only_public_names(path: Path) -> None:
    assert _private_uses(path) == []


def test_the_private_name_check_can_fail(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from quiver.engine.bq import _pack_plane\n"
        "from quiver.engine import bq\n"
        "bq._rotation(3, 0)\n"
    )
    assert _private_uses(probe) == ["quiver.engine.bq._pack_plane", "bq._rotation"]
