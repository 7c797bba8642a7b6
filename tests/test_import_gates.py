"""`orchestrate import` turns go/no-go criteria and review steps into approval gates."""

from __future__ import annotations

import textwrap

from orchestrator.mdimport import import_markdown
from tests.support.recordings import FIXTURES

MARKDOWN = FIXTURES.parent / "markdown"


def approvals(text: str) -> dict[str, bool]:
    plan = import_markdown(textwrap.dedent(text), source="plan.md").plan
    return {t.id: t.approval for t in plan.teams}


def test_a_phases_go_no_go_criteria_gate_the_teams_that_end_it() -> None:
    """Each phase's Go/No-Go criteria: the teams ending that phase wait for a person; the YAML
    says why on the line."""
    result = import_markdown((MARKDOWN / "mobile-phases.md").read_text(), source="m.md")
    gated = {t.id for t in result.plan.teams if t.approval}
    assert gated == {
        "pin-dependency-versions",
        "conflict-resolution-model",
        "local-database-migrations",
        "sync-status-ui",
    }
    assert "approval: true  # the Go/No-Go criteria of 'Phase 1" in result.yaml_text


def test_a_teams_own_go_no_go_gates_it_other_criteria_do_not() -> None:
    """**Go/No-Go:** under a team gates it; **Acceptance criteria:** is prose for the agent."""
    got = approvals(
        """
        # Plan

        ## Team 1: Database
        **Task:** schema
        **Go/No-Go:**
        - migrations run on staging

        ## Team 2: API
        **Task:** endpoints
        **Dependencies:** Team 1
        **Acceptance criteria:**
        - every endpoint validates its input
        """
    )
    assert got == {"database": True, "api": False}


def test_a_review_step_before_the_merge_gates_the_last_teams() -> None:
    """ "Code review (2 reviewers)" in the integration section: the teams merged last (those no
    team depends on) wait for a person."""
    got = approvals(
        """
        # Plan

        ## Team 1: Database
        **Task:** schema

        ## Team 2: API
        **Task:** endpoints
        **Dependencies:** Team 1

        ## Integration
        - Merge every branch
        - Code review (2 reviewers)
        """
    )
    assert got == {"database": False, "api": True}
