#!/usr/bin/env python3
"""A scripted stand-in for an AI coding agent, for the orchestrate quickstart.

Run as ``python3 agent.py TEAM ATTEMPT`` inside the team's worktree. It needs
no API key: it writes the team's files from the table below, talks a little
while it works, and fails the first attempt of the ``storage`` team on purpose
so that you can watch orchestrate retry it with feedback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

FILES: dict[str, dict[str, str]] = {
    "core": {
        "inventory/__init__.py": '"""A tiny inventory library, built by five scripted teams."""\n',
        "inventory/models.py": '''"""The data model."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    sku: str
    name: str
    quantity: int = 0

    def restocked(self, amount: int) -> "Item":
        if amount <= 0:
            raise ValueError("restock by a positive amount")
        return Item(self.sku, self.name, self.quantity + amount)
''',
    },
    "storage": {
        "inventory/storage.py": '''"""Keep items in memory, keyed by SKU."""

from inventory.models import Item


class Store:
    def __init__(self) -> None:
        self._items: dict[str, Item] = {}

    def put(self, item: Item) -> None:
        self._items[item.sku] = item

    def get(self, sku: str) -> Item:
        return self._items[sku]

    def all(self) -> list[Item]:
        return sorted(self._items.values(), key=lambda i: i.sku)
''',
    },
    "api": {
        "inventory/api.py": '''"""Operations a caller uses."""

from inventory.models import Item
from inventory.storage import Store


def add_item(store: Store, sku: str, name: str, quantity: int = 0) -> Item:
    item = Item(sku, name, quantity)
    store.put(item)
    return item


def restock(store: Store, sku: str, amount: int) -> Item:
    item = store.get(sku).restocked(amount)
    store.put(item)
    return item
''',
    },
    "docs": {
        "docs/usage.md": """# Using inventory

    from inventory.storage import Store
    from inventory.api import add_item, restock

    store = Store()
    add_item(store, "A-1", "widget")
    restock(store, "A-1", 5)
""",
    },
    "tests": {
        "tests/test_inventory.py": """import unittest

from inventory.api import add_item, restock
from inventory.storage import Store


class InventoryTest(unittest.TestCase):
    def test_restock_adds_quantity(self) -> None:
        store = Store()
        add_item(store, "A-1", "widget", 2)
        self.assertEqual(restock(store, "A-1", 3).quantity, 5)

    def test_restock_refuses_nonsense(self) -> None:
        store = Store()
        add_item(store, "A-1", "widget")
        with self.assertRaises(ValueError):
            restock(store, "A-1", 0)


if __name__ == "__main__":
    unittest.main()
""",
    },
}
FAIL_ONCE = "storage"
PAUSE = float(os.environ.get("QUICKSTART_AGENT_PAUSE", "0.6"))


def say(text: str) -> None:
    print(text, flush=True)
    time.sleep(PAUSE)


def first_time(team: str) -> bool:
    """True the first time TEAM runs in this repository (a marker in the shared .git dir)."""
    proc = subprocess.run(
        ["git", "rev-parse", "--git-common-dir"], capture_output=True, text=True, check=False
    )
    common = Path(proc.stdout.strip() or ".git").resolve()
    marker = common / "quickstart-agent" / f"{team}.tried"
    if marker.exists():
        return False
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("tried once\n")
    return True


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in FILES:
        print(f"usage: agent.py TEAM [ATTEMPT]; TEAM is one of {', '.join(FILES)}", file=sys.stderr)
        return 2
    team = argv[1]
    attempt = argv[2] if len(argv) > 2 else "?"
    say(f"[{team}] attempt {attempt}: reading the task and the repository")
    if team == FAIL_ONCE and first_time(team):
        say(f"[{team}] drafting inventory/storage.py ...")
        print(
            f"[{team}] error: lost my train of thought (a planned failure: watch the retry)",
            file=sys.stderr,
            flush=True,
        )
        return 1
    for path, content in FILES[team].items():
        say(f"[{team}] writing {path}")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    say(f"[{team}] done: {len(FILES[team])} file(s) written")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
