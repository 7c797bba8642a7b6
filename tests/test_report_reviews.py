"""Who approved or rejected each team's work, and when, is in the report."""

from __future__ import annotations

import pytest

from orchestrator.state.gates import Decision, decide, request_gate
from orchestrator.state.store import Store
from orchestrator.views.report import build_report, render_markdown
from tests.support.redis import make_run

pytestmark = pytest.mark.anyio


async def test_every_decision_is_in_the_report_in_order(store: Store) -> None:
    """A rejection then an approval of the next attempt: both in JSON and Markdown."""
    run = await make_run(store, teams=("db", "auth"))
    await request_gate(store, run, "db", attempt=1)
    await decide(store, run, "db", Decision.REJECT, by="ana@laptop", text="no down migration")
    await request_gate(store, run, "db", attempt=2)
    await decide(store, run, "db", Decision.APPROVE, by="bo@desk", text="")
    data = await build_report(store, run)
    teams = {t["id"]: t for t in data["teams"]}
    reviews = teams["db"]["reviews"]
    assert [(r["attempt"], r["decision"], r["by"], r["text"]) for r in reviews] == [
        (1, "rejected", "ana@laptop", "no down migration"),
        (2, "approved", "bo@desk", None),
    ]
    assert reviews[0]["at"] <= reviews[1]["at"]
    assert teams["auth"]["reviews"] == []
    text = render_markdown(data)
    assert "- attempt 1 rejected by ana@laptop at " in text
    assert text.index("attempt 1 rejected") < text.index("attempt 2 approved by bo@desk")
