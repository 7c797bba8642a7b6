"""How a run ended, decided without IO: :func:`run_verdict`.

The engine gathers the facts (was the run cancelled or interrupted, where each
team stands in the store, why the scheduler stopped starting teams, what the
integration did) and writes what this returns as the run's last transition.
Kept free of Redis and processes so that every case is a row of a table test
(``tests/test_verdict.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from orchestrator.state.status import IntegrationStatus, RunStatus, TeamStatus

__all__ = ["RunFacts", "Verdict", "awaiting_reason", "run_verdict"]


@dataclass(frozen=True)
class RunFacts:
    """What the engine knows when a run stops."""

    teams: Mapping[str, TeamStatus]
    """Each team's status (in plan order)."""
    cancelled: bool = False
    """``orchestrate cancel`` stopped it."""
    cancel_reason: str | None = None
    """Who cancelled it (``cancelled by HOST pid N``), when known."""
    interrupted: bool = False
    """A signal stopped it."""
    detached: bool = False
    """That signal was SIGHUP: the agents were left running."""
    stop_reason: str | None = None
    """Why no further team started (``--fail-fast``, a spent budget), if something stopped it."""
    integration: IntegrationStatus | None = None
    """What the integration phase did; None when it never ran."""
    integration_reason: str | None = None
    paused_for: str | None = None
    """The run stops to wait for a person: ``approval`` (only gates are left) or ``budget``."""
    budget_reasons: tuple[str, ...] = ()
    """Why the teams a spent budget stopped were stopped."""
    run_id: str = "RUN"
    """For the commands the reason names."""


class Verdict(NamedTuple):
    """The run's last status and its reason."""

    status: RunStatus
    reason: str | None
    """None when every team succeeded and the integration (if any) passed."""


def run_verdict(facts: RunFacts) -> Verdict:
    """The run's end: cancelled, interrupted, succeeded or failed, and the one-line reason."""
    if facts.cancelled:
        who = facts.cancel_reason or "cancelled"
        return Verdict(RunStatus.CANCELLED, f"{who}; `orchestrate resume` finishes it")
    if facts.interrupted and facts.detached:
        return Verdict(
            RunStatus.INTERRUPTED,
            "interrupted (SIGHUP); its agents go on: `orchestrate resume` re-attaches them",
        )
    if facts.interrupted:
        return Verdict(RunStatus.INTERRUPTED, "interrupted; `orchestrate resume` finishes it")
    if facts.paused_for == "budget" and TeamStatus.FAILED not in facts.teams.values():
        spent = facts.stop_reason or next(iter(facts.budget_reasons), "budget spent")
        return Verdict(
            RunStatus.PAUSED,
            f"paused (budget): {spent}; `orchestrate resume {facts.run_id} --budget-usd N` "
            "(or --budget-tokens N) raises it and goes on",
        )
    if facts.paused_for == "approval":
        waiting = [t for t, s in facts.teams.items() if s is TeamStatus.AWAITING_APPROVAL]
        return Verdict(RunStatus.PAUSED, awaiting_reason(facts.run_id, waiting))
    every_team = all(s is TeamStatus.SUCCEEDED for s in facts.teams.values())
    integrated = facts.integration in (None, IntegrationStatus.SUCCEEDED)
    if every_team and integrated:
        return Verdict(RunStatus.SUCCEEDED, None)
    if every_team:
        return Verdict(RunStatus.FAILED, f"integration: {facts.integration_reason}")
    failed = [t for t, s in facts.teams.items() if s is TeamStatus.FAILED]
    blocked = [t for t, s in facts.teams.items() if s is TeamStatus.BLOCKED]
    parts = []
    if failed:
        parts.append("failed: " + ", ".join(failed))
    if blocked:
        parts.append("blocked: " + ", ".join(blocked))
    if facts.stop_reason:
        parts.append(facts.stop_reason)
    if facts.integration is not None and facts.integration is not IntegrationStatus.SKIPPED:
        parts.append(f"integration {facts.integration}: {facts.integration_reason or 'ok'}")
    return Verdict(RunStatus.FAILED, "; ".join(parts) or "not every team succeeded")


def awaiting_reason(run_id: str, teams: list[str]) -> str:
    """Why a run paused for approval, and what to run."""
    from orchestrator.state.gates import approve_command

    names = ", ".join(teams) or "a team"
    first = teams[0] if teams else "TEAM"
    return (
        f"waiting for approval of {names}: `{approve_command(run_id, first)}` "
        f"(or `orchestrate reject ... --reason`), then `orchestrate resume {run_id}`"
    )
