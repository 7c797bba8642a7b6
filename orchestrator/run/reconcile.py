"""What a resume does with each team, decided without IO: :func:`decide`.

``orchestrate resume`` reads every team from the store, asks :func:`decide`
what to do with it, and applies the answer (:func:`orchestrator.run.resume.reconcile`:
the transitions, the attempt records, the recoveries the scheduler goes on
with). Only one fact needs a look at the machine: whether a running attempt's
agent is still there. :func:`decide` asks for it by answering
:attr:`Action.PROBE`; the caller looks and asks again with ``agent_found``.

==========================  ==================  ===============================
the store says              action              what happens
==========================  ==================  ===============================
succeeded                   KEEP                kept, never run again
running/verifying, agent    ATTACH              re-attached (running), or judged
running or status written                       (ended): the attempt counts once
running/verifying, neither  RESTART_CRASHED     the next attempt starts, the
                                                crashed one uncounted
retrying                    GO_ON               its next attempt starts at once
paused (after attempt n)    AFTER_PAUSE         (a usage limit) attempt n+1 starts once
                                                the provider's recorded pause ended
awaiting_approval (n >= 1)  AWAIT_DECISION      waits at its gate again; a decision
                                                taken meanwhile is read at once
cancelled (after attempt    RESTART_CANCELLED   the next attempt starts, the
n >= 1)                                         cancelled one uncounted
failed / blocked            LEAVE               left as they are
failed, --retry-failed      RETRY_FAILED        fresh attempts (retries anew)
blocked, --retry-failed     UNBLOCK             pending again
pending (or cancelled       START               scheduled like a new team
before attempt 1)
==========================  ==================  ===============================

:data:`STEPS` says, per action, which transition is written; ``tests/test_reconcile.py``
checks the whole table, and that every step is one the state machine allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from orchestrator.state.status import TeamStatus

__all__ = ["STEPS", "Action", "Step", "TeamFacts", "decide"]


class Action(StrEnum):
    """What a resume does with one team."""

    KEEP = "keep"
    LEAVE = "leave"
    RETRY_FAILED = "retry-failed"
    UNBLOCK = "unblock"
    PROBE = "probe"
    """Not an answer yet: look whether the attempt's agent is there (``agent_found``)."""
    ATTACH = "attach"
    RESTART_CRASHED = "restart-crashed"
    GO_ON = "go-on"
    AFTER_PAUSE = "after-pause"
    AWAIT_DECISION = "await-decision"
    RESTART_CANCELLED = "restart-cancelled"
    START = "start"


@dataclass(frozen=True)
class TeamFacts:
    """One team as the store has it (a team missing from the store is pending at 0)."""

    status: TeamStatus
    attempt: int
    retry_failed: bool = False
    """``resume --retry-failed``."""
    agent_found: bool | None = None
    """Whether the current attempt's supervisor is running or wrote its status (None:
    not looked at yet; only a running or verifying team needs it)."""


@dataclass(frozen=True)
class Step:
    """What applying an action writes."""

    to: TeamStatus | None
    """The team's transition (None: none)."""
    next_attempt: bool = False
    """The transition starts the next attempt (attempt + 1)."""
    uncounted: str | None = None
    """The current attempt stops counting against ``retries``, for this reason."""
    scheduled: bool = False
    """The scheduler goes on with the team (a Recovery); else it sees its status only."""


STEPS: dict[Action, Step] = {
    Action.KEEP: Step(None),
    Action.LEAVE: Step(None),
    Action.RETRY_FAILED: Step(TeamStatus.RETRYING, next_attempt=True, scheduled=True),
    Action.UNBLOCK: Step(TeamStatus.PENDING),
    Action.ATTACH: Step(None, scheduled=True),
    Action.RESTART_CRASHED: Step(
        TeamStatus.RETRYING, next_attempt=True, uncounted="crashed", scheduled=True
    ),
    Action.GO_ON: Step(None, scheduled=True),
    Action.AFTER_PAUSE: Step(None, scheduled=True),
    Action.AWAIT_DECISION: Step(None, scheduled=True),
    Action.RESTART_CANCELLED: Step(
        TeamStatus.RETRYING, next_attempt=True, uncounted="cancelled", scheduled=True
    ),
    Action.START: Step(None),
}
"""Action -> what it writes (PROBE writes nothing: it is a question)."""


def decide(facts: TeamFacts) -> Action:
    """What a resume does with this team (see the module's table)."""
    status, n = facts.status, facts.attempt
    if status is TeamStatus.SUCCEEDED:
        return Action.KEEP
    if status in (TeamStatus.FAILED, TeamStatus.BLOCKED) and not facts.retry_failed:
        return Action.LEAVE
    if status is TeamStatus.FAILED:
        return Action.RETRY_FAILED
    if status is TeamStatus.BLOCKED:
        return Action.UNBLOCK
    if status in (TeamStatus.RUNNING, TeamStatus.VERIFYING) and n:
        if facts.agent_found is None:
            return Action.PROBE
        return Action.ATTACH if facts.agent_found else Action.RESTART_CRASHED
    if status is TeamStatus.RETRYING:
        return Action.GO_ON
    if status is TeamStatus.PAUSED and n:
        return Action.AFTER_PAUSE
    if status is TeamStatus.AWAITING_APPROVAL and n:
        return Action.AWAIT_DECISION
    if status is TeamStatus.CANCELLED and n:
        return Action.RESTART_CANCELLED
    return Action.START  # pending, or cancelled before its first attempt


def start_status(facts: TeamFacts, action: Action) -> TeamStatus:
    """The team's status once the action is applied (what the scheduler starts from)."""
    step = STEPS[action]
    if step.to is not None:
        return step.to
    if action is Action.START:
        return TeamStatus.PENDING
    return facts.status
