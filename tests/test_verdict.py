"""How a run ends (orchestrator.run.verdict): a table of facts -> status and reason, no Redis."""

from __future__ import annotations

import pytest

from orchestrator.run.verdict import RunFacts, run_verdict
from orchestrator.state.status import IntegrationStatus, RunStatus, TeamStatus

S = TeamStatus
I = IntegrationStatus  # noqa: E741
OK = {"db": S.SUCCEEDED, "api": S.SUCCEEDED}
MIXED = {"db": S.FAILED, "api": S.BLOCKED, "web": S.SUCCEEDED}

TABLE = [
    (RunFacts(OK), RunStatus.SUCCEEDED, None),
    (RunFacts(OK, integration=I.SUCCEEDED), RunStatus.SUCCEEDED, None),
    (
        RunFacts(OK, integration=I.FAILED, integration_reason="the suite failed"),
        RunStatus.FAILED,
        "integration: the suite failed",
    ),
    (
        RunFacts(MIXED, integration=I.SKIPPED, integration_reason="not every team succeeded"),
        RunStatus.FAILED,
        "failed: db; blocked: api",
    ),
    (
        RunFacts({"db": S.SUCCEEDED, "api": S.PENDING}, stop_reason="the run's budget is spent"),
        RunStatus.FAILED,
        "the run's budget is spent",
    ),
    (
        RunFacts(
            {"db": S.FAILED, "api": S.SUCCEEDED},
            integration=I.FAILED,
            integration_reason="conflict in a.txt",
        ),
        RunStatus.FAILED,
        "failed: db; integration failed: conflict in a.txt",
    ),
    (RunFacts({"db": S.CANCELLED}), RunStatus.FAILED, "not every team succeeded"),
    (
        RunFacts({"db": S.SUCCEEDED, "api": S.PENDING}, paused_for="budget", run_id="r1",
                 stop_reason="the run's budget is spent: $2.00 of $2.00"),
        RunStatus.PAUSED,
        "paused (budget): the run's budget is spent: $2.00 of $2.00; `orchestrate resume r1 "
        "--budget-usd N` (or --budget-tokens N) raises it and goes on",
    ),
    (
        RunFacts({"db": S.FAILED, "api": S.PENDING}, paused_for="budget"),
        RunStatus.FAILED,
        "failed: db",
    ),
    (
        RunFacts(OK, cancelled=True, cancel_reason="cancelled by h pid 1", interrupted=True),
        RunStatus.CANCELLED,
        "cancelled by h pid 1; `orchestrate resume` finishes it",
    ),
    (
        RunFacts(MIXED, cancelled=True),
        RunStatus.CANCELLED,
        "cancelled; `orchestrate resume` finishes it",
    ),
    (
        RunFacts(MIXED, interrupted=True),
        RunStatus.INTERRUPTED,
        "interrupted; `orchestrate resume` finishes it",
    ),
    (
        RunFacts(OK, interrupted=True, detached=True),
        RunStatus.INTERRUPTED,
        "interrupted (SIGHUP); its agents go on: `orchestrate resume` re-attaches them",
    ),
]


@pytest.mark.parametrize(("facts", "status", "reason"), TABLE)
def test_a_run_ends_as_the_table_says(
    facts: RunFacts, status: RunStatus, reason: str | None
) -> None:
    """The run's last status and the one line `run`, `status` and the report show for it:
    a cancel wins over a signal, a signal over the teams, the teams over the integration."""
    assert run_verdict(facts) == (status, reason)
