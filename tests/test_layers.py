"""The package's layers: stated once (orchestrator/__init__.py), checked by `lint-imports`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import orchestrator

ROOT = Path(__file__).resolve().parents[1]


def _stated() -> list[list[str]]:
    """The layers as orchestrator/__init__.py's docstring draws them, highest first."""
    doc = orchestrator.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    known = {p.stem for p in (ROOT / "orchestrator").iterdir()}
    layers: list[list[str]] = []
    for line in block.splitlines():
        head = re.match(r" {4}(\S+) +(.*)", line)
        if head:  # "    run       engine resume ..."
            layers.append(head.group(2).split())
        elif layers and line.split() and set(line.split()) <= known:  # more of its modules
            layers[-1] += line.split()  # (the layer's description line is not all modules)
    return layers


def _contract() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["id"] == "layers"]
    return [[m.strip() for m in re.split(r"[:|]", layer)] for layer in layers["layers"]]


def test_the_checked_layers_are_the_stated_ones() -> None:
    """What CI checks is what a newcomer reads at the top of the package, layer by layer."""
    stated = _stated()
    assert len(stated) == 9
    assert [sorted(layer) for layer in stated] == [sorted(layer) for layer in _contract()]


def test_every_module_is_in_a_layer() -> None:
    """A new module gets a place in the layers (else nothing would check what it imports)."""
    placed = {m for layer in _contract() for m in layer}
    package = ROOT / "orchestrator"
    found = {
        p.stem if p.is_file() else p.name
        for p in package.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert found - placed == set(), "add these to the layers"
    assert placed - found == set(), "these are in the layers but not in the package"


def _imports(graph: object, name: str) -> str:
    """The top-level modules ``orchestrator.<name>`` (and its submodules) import, as the
    module table of docs/internals.md lists them (``errors`` left out)."""
    g: Any = graph
    module = f"orchestrator.{name}"
    inside = [module, *g.find_descendants(module)] if g.find_children(module) else [module]
    found = {
        dep.split(".")[1]
        for m in inside
        for dep in g.find_modules_directly_imported_by(m)
        if dep.count(".") >= 1
    }
    return ", ".join(sorted(found - {name, "errors"})) or "—"


def test_the_module_table_of_the_internals_page_is_true_of_the_code() -> None:
    """docs/internals.md names every module in its layer with what it imports, so a
    contributor reads the shape from one page; it may not drift from the code again."""
    import grimp

    graph = grimp.build_graph("orchestrator")
    text = (ROOT / "docs" / "internals.md").read_text()
    table = text[text.index("## Modules") : text.index("## Contracts")]
    cells = [line.strip("| ").split(" | ") for line in table.splitlines() if line.startswith("| ")]
    rows = [(c[0], c[-1].strip()) for c in cells if re.fullmatch(r"\*\*\w+\*\*|`[\w/.]+`", c[0])]
    layers: list[list[str]] = []
    wrong = []
    for cell, imports in rows:
        if cell.startswith("**"):
            layers.append([])
            continue
        name = cell.strip("`").removesuffix("/").removesuffix(".py")
        layers[-1].append(name)
        want = _imports(graph, name)
        if imports != want:
            wrong.append(f"{cell}: the code imports {want}")
    assert not wrong, "docs/internals.md's module table:\n" + "\n".join(wrong)
    assert [sorted(layer) for layer in layers] == [sorted(layer) for layer in _stated()]
