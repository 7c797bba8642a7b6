"""`orchestrate import` on documents built to make it hang: references that expand to
millions of teams, sentences that name a team tens of thousands of times."""

from __future__ import annotations

from orchestrator.mdimport import import_markdown
from orchestrator.mdimport.refs import MAX_WALKED, ref_spans

_DOC = "# Plan\n\n### Team 1: DB\n**Files:** `db/x.py`\n\n### Team 2: API (needs: Team 1)\n"


def test_many_ranges_in_one_line_expand_to_a_bounded_number_of_keys() -> None:
    """A line of 20,000 ranges ("Teams 1-99, 1-99, ...", "Team 1-99 Team 100-198 ...")
    yields each key once and walks at most MAX_WALKED keys in all (it walked two million,
    two gigabytes for a 600 KB document); the first ranges still read as teams."""
    keys, _, _ = ref_spans("Teams " + ", ".join(["1-99"] * 20_000))
    assert len(keys) <= 100
    assert ("team", "1") in keys and ("team", "99") in keys
    spread = " ".join(f"Team {i}-{i + 98}" for i in range(1, 20_000 * 99, 99))
    keys, _, _ = ref_spans(spread)
    assert len(keys) <= MAX_WALKED + 20_000
    assert ("team", "1") in keys and ("team", "99") in keys


def test_a_sentence_naming_a_team_100000_times_imports_at_once() -> None:
    """Each mention is placed with one look at its neighbour, not a scan of every mention
    found so far: 100,000 mentions in one sentence (800 KB) import in seconds (before:
    minutes, past the test timeout), and the order they state is read."""
    result = import_markdown(_DOC + "\nTeam 2 uses " + "Team 1, " * 100_000 + ".\n")
    teams = {t.id: t for t in result.plan.teams}
    assert list(teams["api"].depends_on) == ["db"]
