"""The package layering of README "Layout": lower layers never import higher ones, and no cycles.

Every ``import`` / ``from ... import`` of every module under ``ecgproto/`` is read with ``ast``,
function-local imports included (they run too, only later). ``typing.TYPE_CHECKING`` blocks are
skipped: they never run. A section schema ``ecgproto/<package>/config.py`` is a leaf dataclass
module that belongs to the base layer (``ecgproto/config.py`` assembles them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "ecgproto"

# layer of each package; a module may import its own package, the base layer and lower layers only
LAYERS: dict[str, int] = {
    "data": 1,
    "synth": 2,
    "model": 3,
    "train": 4,
    "score": 5,
    "explain": 5,
    "evaluate": 6,
    "phenotype": 6,
    "commands": 7,
    "cli": 7,
}
SAME_UNIT = {"cli": "commands"}  # the console script and its sub-commands are one front end
BASE = 0


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py")) if "__pycache__" not in p.parts}


def unit_of(module: str) -> tuple[int, str]:
    """(layer, unit) of an ``ecgproto`` module: a unit is a package, or one base-level module."""
    parts = module.split(".")
    if len(parts) == 1:
        return BASE, "ecgproto"
    top = parts[1]
    if top in LAYERS:
        if len(parts) == 3 and parts[2] == "config" and top not in ("commands", "cli"):
            return BASE, module  # section schema (leaf dataclasses)
        return LAYERS[top], SAME_UNIT.get(top, top)
    return BASE, ".".join(parts[:2])  # atomic, errors, progress, config, configuration, metrics, resources, ...


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    out: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def imports_in(module: str, is_package: bool, nodes: list[ast.Import | ast.ImportFrom],
               known: dict[str, Path]) -> list[tuple[str, int]]:
    """``(imported ecgproto module, line)`` for the import ``nodes`` of ``module`` (relative ones resolved)."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule pkg.sub when it exists
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        found += [(n, node.lineno) for n in names if n == "ecgproto" or n.startswith("ecgproto.")]
    return found


def imports_of(module: str, path: Path, known: dict[str, Path], top_level_only: bool = False) -> list[tuple[str, int]]:
    """Every import of the file ``path`` (or only those at module level, which run on import)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    if top_level_only:
        nodes = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    else:
        nodes = _import_nodes(tree)
    return imports_in(module, path.name == "__init__.py", nodes, known)


def import_graph() -> list[tuple[str, str, str]]:
    """``(importing module, imported module, "file:line")`` for every ecgproto-internal import."""
    known = all_modules()
    edges = []
    for module, path in known.items():
        for target, line in imports_of(module, path, known):
            edges.append((module, target, f"{path.relative_to(ROOT.parent)}:{line}"))
    return edges


def layering_violations(edges: list[tuple[str, str, str]]) -> list[str]:
    bad = []
    for src, dst, where in edges:
        (ls, us), (ld, ud) = unit_of(src), unit_of(dst)
        if us == ud:
            continue
        if ld >= ls and not (ls == ld == BASE):
            bad.append(f"{where}: {src} (layer {ls}) imports {dst} (layer {ld})")
    return bad


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a node list (first node repeated at the end), or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def unit_graph(edges: list[tuple[str, str, str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for src, dst, _ in edges:
        us, ud = unit_of(src)[1], unit_of(dst)[1]
        if us != ud:
            graph.setdefault(us, set()).add(ud)
    return graph


def test_every_module_is_in_a_layer():
    unknown = [m for m in all_modules() if m.count(".") >= 2 and m.split(".")[1] not in LAYERS]
    assert not unknown, f"modules in a package without a layer (add it to LAYERS and README Layout): {unknown}"


def test_no_import_of_a_higher_layer():
    bad = layering_violations(import_graph())
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_no_cycle_between_packages():
    cycle = find_cycle(unit_graph(import_graph()))
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle)


def test_no_cycle_between_modules_at_import_time():
    """Module-level imports (those that run on import) form no circle inside a package either."""
    known = all_modules()
    graph = {m: {t for t, _ in imports_of(m, p, known, top_level_only=True) if t in known and t != m}
             for m, p in known.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "module import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize("src,dst,upward", [
    ("ecgproto.train.run", "ecgproto.score.ood", True),
    ("ecgproto.score.scorer", "ecgproto.model.checkpoint", False),
    ("ecgproto.data.cache", "ecgproto.synth.archive", True),
    ("ecgproto.config", "ecgproto.model.config", False),
    ("ecgproto.evaluate.run", "ecgproto.phenotype.inputs", True),
    ("ecgproto.atomic", "ecgproto.errors", False),
    ("ecgproto.commands.demo", "ecgproto.cli", False),
    ("ecgproto.score.ood", "ecgproto.explain.report", True),
])
def test_the_checker_itself(src, dst, upward):
    assert bool(layering_violations([(src, dst, "x.py:1")])) is upward


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None
