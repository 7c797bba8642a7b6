"""What `orchestrate resume` does with each team (orchestrator.run.reconcile): a table, no Redis."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.run.reconcile import STEPS, Action, TeamFacts, decide, start_status
from orchestrator.state.status import TEAM_TRANSITIONS, TeamStatus

S = TeamStatus
A = Action

# status, attempt, --retry-failed, agent found (None: not looked at) -> action
TABLE = [
    (S.SUCCEEDED, 2, False, None, A.KEEP),
    (S.SUCCEEDED, 2, True, None, A.KEEP),
    (S.FAILED, 3, False, None, A.LEAVE),
    (S.BLOCKED, 0, False, None, A.LEAVE),
    (S.FAILED, 3, True, None, A.RETRY_FAILED),
    (S.FAILED, 0, True, None, A.RETRY_FAILED),
    (S.BLOCKED, 0, True, None, A.UNBLOCK),
    (S.RUNNING, 1, False, None, A.PROBE),
    (S.VERIFYING, 2, False, None, A.PROBE),
    (S.RUNNING, 1, False, True, A.ATTACH),
    (S.VERIFYING, 2, True, True, A.ATTACH),
    (S.RUNNING, 1, False, False, A.RESTART_CRASHED),
    (S.VERIFYING, 1, False, False, A.RESTART_CRASHED),
    (S.RUNNING, 0, False, None, A.START),
    (S.RETRYING, 2, False, None, A.GO_ON),
    (S.RETRYING, 2, True, None, A.GO_ON),
    (S.PAUSED, 2, False, None, A.AFTER_PAUSE),
    (S.AWAITING_APPROVAL, 1, False, None, A.AWAIT_DECISION),
    (S.AWAITING_APPROVAL, 1, True, None, A.AWAIT_DECISION),
    (S.CANCELLED, 1, False, None, A.RESTART_CANCELLED),
    (S.CANCELLED, 0, False, None, A.START),
    (S.PENDING, 0, False, None, A.START),
    (S.PENDING, 0, True, None, A.START),
]


@pytest.mark.parametrize(("status", "attempt", "retry_failed", "found", "action"), TABLE)
def test_resume_decides_each_team_as_the_table_says(
    status: TeamStatus, attempt: int, retry_failed: bool, found: bool | None, action: Action
) -> None:
    """A succeeded team is never run again, a live agent is re-attached (its attempt counted
    once), a crashed or cancelled attempt is followed by the next one, failed and blocked
    teams wait for --retry-failed (docs: resume)."""
    facts = TeamFacts(status, attempt, retry_failed=retry_failed, agent_found=found)
    assert decide(facts) is action


def test_every_state_and_flag_gets_an_answer_the_state_machine_allows() -> None:
    """Whatever a crash left in the store, a resume has an answer for it, and the transition
    it writes is one Redis accepts (a resume never fails on an illegal transition)."""
    for status in TeamStatus:
        for attempt in (0, 1, 3):
            for retry_failed in (False, True):
                facts = TeamFacts(status, attempt, retry_failed=retry_failed)
                action = decide(facts)
                if action is Action.PROBE:
                    answers = [
                        decide(dataclasses.replace(facts, agent_found=f)) for f in (True, False)
                    ]
                else:
                    answers = [action]
                for answer in answers:
                    assert answer is not Action.PROBE
                    step = STEPS[answer]
                    if step.to is not None:
                        assert step.to in TEAM_TRANSITIONS[status], (status, answer)
                    after = start_status(facts, answer)
                    if not step.scheduled:  # the scheduler starts it only from pending
                        assert after in (TeamStatus.PENDING, *TeamStatus.FINAL), (status, answer)


def test_restarted_attempts_are_uncounted_with_their_reason() -> None:
    """A crashed or cancelled attempt does not use up a retry (resume's promise), and says why."""
    assert {a: s.uncounted for a, s in STEPS.items() if s.uncounted} == {
        Action.RESTART_CRASHED: "crashed",
        Action.RESTART_CANCELLED: "cancelled",
    }
