"""The import graph of llmrec: no module imports from a higher layer (``llmrec.layers``), and no import cycle.

Every import counts, wherever it is written (module level, inside a function, under ``TYPE_CHECKING``): an edge
goes to the module imported, or, for ``from package import name``, to ``package.name`` when that is a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from llmrec.layers import LAYERS, layer_of

ROOT = Path(__file__).parents[1] / "llmrec"


def module_name(path: Path) -> str:
    parts = ["llmrec", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """The llmrec modules ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t == "llmrec" or t.startswith("llmrec."))
    found.discard(name)
    return found


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def test_every_module_is_in_a_layer() -> None:
    for name in MODULES:
        layer_of(name)  # raises for a top-level module or package missing from LAYERS


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = [
        f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
        for name, targets in GRAPH.items()
        for target in sorted(targets)
        if target in MODULES and layer_of(target) > layer_of(name)
    ]
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


def test_no_import_cycle() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH.get(node, ()):
            if target not in MODULES:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in MODULES:
        if name not in index:
            visit(name)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize(
    ("source", "upward"),
    [
        ("from llmrec.cli import main", True),
        ("import llmrec.inference.hf", True),
        ("from .base import Encoder", False),
    ],
)
def test_the_walk_finds_imports_inside_functions(source: str, upward: bool, tmp_path: Path) -> None:
    """An import written inside a function of a low module is seen (so the layer check can fail)."""
    fake = tmp_path / "train.py"
    fake.write_text(f"def f():\n    {source}\n")
    targets = imports_of("llmrec.encoders.train", fake)
    assert targets and any(layer_of(t) > layer_of("llmrec.encoders.train") for t in targets) == upward


def test_no_module_is_over_400_lines() -> None:
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"


def test_layers_list_each_top_level_name_once() -> None:
    names = [name for layer in LAYERS for name in layer]
    assert len(names) == len(set(names))
