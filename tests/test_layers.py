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


def module_table(text: str) -> list[tuple[str, str]]:
    """The rows of docs/internals.md's module table: (``**layer**``, "") or (`` `path` ``,
    its imports column), in order. A path is a module (``engine.py``, ``run/engine.py``)
    or a package (``cli/``: its modules that no other row names)."""
    table = text[text.index("## Modules") : text.index("## Contracts")]
    cells = [line.strip("| ").split(" | ") for line in table.splitlines() if line.startswith("| ")]
    return [
        (c[0], c[-1].strip() if len(c) > 1 else "")
        for c in cells
        if re.fullmatch(r"\*\*\w+\*\*|`[\w/.]+`", c[0])
    ]


def table_imports(graph: Any, labels: list[str]) -> dict[str, str]:
    """Each row's imports column as the code has it: the rows (by dotted name, ``errors``
    left out) whose modules the row's modules import, lazy imports included."""
    dotted = {label: label.strip("`").removesuffix(".py").strip("/").replace("/", ".")
              for label in labels}  # fmt: skip
    owner: dict[str, str] = {}
    for label, name in sorted(dotted.items(), key=lambda kv: kv[1].count(".")):
        module = f"orchestrator.{name}"
        for m in [module, *graph.find_descendants(module)] if label.endswith("/`") else [module]:
            owner[m] = label  # a deeper row claims its modules from its package's row
    out = {}
    for label in labels:
        mine = [m for m, o in owner.items() if o == label]
        found = {
            dotted[owner[dep]]
            for m in mine
            for dep in graph.find_modules_directly_imported_by(m)
            if owner.get(dep) not in (None, label)
        }
        out[label] = ", ".join(sorted(found - {"errors"})) or "—"
    return out


def test_the_module_table_of_the_internals_page_is_true_of_the_code() -> None:
    """docs/internals.md names every module in its layer with what it imports, so a
    contributor reads the shape from one page; it may not drift from the code again."""
    import grimp

    graph = grimp.build_graph("orchestrator")
    rows = module_table((ROOT / "docs" / "internals.md").read_text())
    want = table_imports(graph, [label for label, _ in rows if label.startswith("`")])
    layers: list[set[str]] = []
    wrong = []
    for label, imports in rows:
        if label.startswith("**"):
            layers.append(set())
            continue
        layers[-1].add(label.strip("`").split("/")[0].removesuffix(".py"))
        if imports != want[label]:
            wrong.append(f"{label}: the code imports {want[label]}")
    assert not wrong, "docs/internals.md's module table:\n" + "\n".join(wrong)
    assert layers == [set(layer) for layer in _stated()]
