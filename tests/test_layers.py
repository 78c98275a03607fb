"""The package's layers (docs/DESIGN.md §5) hold: no module imports a layer above its own, and no two
modules import each other, directly or round a loop — counting imports inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "memface_hub"
LAYERS = [
    {"errors", "arrays_io", "artifact_json", "staging", "parallel", "weight_delta"},
    {"io", "face", "audio", "hub", "cards", "provenance"},
    {"memory", "explicit_memory", "a2e", "renderer", "speaker"},
    {"pipeline"},
    {"data", "training", "evaluation"},
    {"cli"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    if not path.is_relative_to(PACKAGE):
        return f"memface_hub.{path.stem}"                                  # a file the tests wrote
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``memface_hub`` module ``path`` imports, at any depth of its code."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("memface_hub")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("memface_hub"):
                target = node.module
            else:
                continue
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}    # "from . import x" names modules
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        targets = set()
        for target in imported_modules(path):
            while target and target not in modules:                        # a name inside a module → the module
                target = target.rpartition(".")[0]
            if target and target != name and target != "memface_hub":
                targets.add(target)
        edges[name] = targets
    return edges


def unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_module_imports_a_layer_above_its_own():
    upward = [f"{source} → {target}" for source, targets in graph().items() for target in targets
              if unit(source) in RANK and unit(target) in RANK and RANK[unit(target)] > RANK[unit(source)]]
    assert not upward, "imports pointing up the layers: " + ", ".join(sorted(upward))
    units = {unit(name) for name in graph() if unit(name)}
    assert units <= set(RANK), f"modules without a layer (add them to LAYERS): {sorted(units - set(RANK))}"


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" → ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_the_checker_sees_imports_inside_functions_and_relative_ones(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("def f():\n    from memface_hub.training import adapt\n    from .pipeline import stream\n")
    assert {"memface_hub.training.adapt", "memface_hub.pipeline.stream"} <= imported_modules(source)
