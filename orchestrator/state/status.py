"""Team and run status: the two state machines, defined once.

Every status a team or a run can be in is a member of :class:`TeamStatus` or
:class:`RunStatus` (the integration phase's, of :class:`IntegrationStatus`).
They are ``StrEnum``: a member *is* its stored string
(``TeamStatus.SUCCEEDED == "succeeded"``), so Redis, events, ``status --json``
and reports hold the same values as before there were types. The sets the
code asks about (is this team final? does it block its downstream teams? is
anyone driving this run?) are class-level frozensets beside the members, and
the transitions each machine allows are the tables below; the Lua scripts
that change a status (:mod:`orchestrator.state.scripts`) are generated from
them, so Redis refuses exactly what these tables refuse.

No other module spells a status as a string: it names a member.

To add a state (for instance a team ``awaiting_approval``, a run ``paused``):

1. add the member to its enum;
2. give it a row in ``TEAM_TRANSITIONS`` / ``RUN_TRANSITIONS`` and add it to
   the rows of the states that may move to it (a row per member is checked at
   import: a member without a row fails the import);
3. put it in the sets it belongs to (``FINAL``, ``DONE``, ...), each with a
   line in the set's docstring saying why;
4. give it a colour and a symbol on the board (``board.py``) and, for teams,
   on the report's timeline (``timeline.py``).

``docs/internals.md`` draws both machines; change the drawing with the tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import ClassVar

__all__ = [
    "RUN_TRANSITIONS",
    "TEAM_TRANSITIONS",
    "IntegrationStatus",
    "RunStatus",
    "TeamStatus",
]


class TeamStatus(StrEnum):
    """Where one team of a run stands (the ``status`` field of its hash)."""

    PENDING = "pending"
    RUNNING = "running"
    VERIFYING = "verifying"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"
    AWAITING_APPROVAL = "awaiting_approval"
    """Its work passed; a person approves or rejects it (``approval: true``)."""
    PAUSED = "paused"
    """A usage limit of its agent's provider: the next attempt starts after the reset."""

    FINAL: ClassVar[frozenset[TeamStatus]]
    """Nothing moves the team on without a resume: the team hash gets ``finished``."""
    UNSUCCESSFUL: ClassVar[frozenset[TeamStatus]]
    """Final and not succeeded: the teams downstream of it are ``blocked``."""
    IN_FLIGHT: ClassVar[frozenset[TeamStatus]]
    """An attempt is under way: an agent may be alive (``cancel`` stops it)."""
    ENDS_ATTEMPT: ClassVar[frozenset[TeamStatus]]
    """Moving here ends the current attempt: the attempt hash gets ``finished``."""

    @property
    def final(self) -> bool:
        return self in TeamStatus.FINAL


TeamStatus.FINAL = frozenset(
    {TeamStatus.SUCCEEDED, TeamStatus.FAILED, TeamStatus.BLOCKED, TeamStatus.CANCELLED}
)
TeamStatus.UNSUCCESSFUL = TeamStatus.FINAL - {TeamStatus.SUCCEEDED}
TeamStatus.IN_FLIGHT = frozenset({TeamStatus.RUNNING, TeamStatus.VERIFYING, TeamStatus.RETRYING})
TeamStatus.ENDS_ATTEMPT = frozenset(
    {TeamStatus.SUCCEEDED, TeamStatus.FAILED, TeamStatus.CANCELLED}
)


class RunStatus(StrEnum):
    """Where a run stands (the ``status`` field of its meta hash)."""

    PENDING = "pending"
    RUNNING = "running"
    INTEGRATING = "integrating"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    PAUSED = "paused"
    """Waiting for a person: an approval, or a budget raised (``resume --budget-usd``)."""

    FINAL: ClassVar[frozenset[RunStatus]]
    """The run ended and says how: ``clean`` may remove it (a resume may still go on)."""
    DONE: ClassVar[frozenset[RunStatus]]
    """No orchestrator drives the run: final, interrupted, or paused for a person
    (``logs -f`` and the board stop)."""
    LIVE: ClassVar[frozenset[RunStatus]]
    """An orchestrator should be driving it (a crash leaves it here: see ``runs.record_crash``)."""

    @property
    def done(self) -> bool:
        return self in RunStatus.DONE

    @property
    def exit_code(self) -> int:
        """The ``orchestrate run``/``resume`` exit code for a run that ended so (a paused
        run's, 3 or 4, says why it waits: ``engine.RunResult.exit_code``)."""
        if self is RunStatus.SUCCEEDED:
            return 0
        if self in (RunStatus.INTERRUPTED, RunStatus.CANCELLED):
            return 130
        return 1


RunStatus.FINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
RunStatus.DONE = RunStatus.FINAL | {RunStatus.INTERRUPTED, RunStatus.PAUSED}
RunStatus.LIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.INTEGRATING})

class IntegrationStatus(StrEnum):
    """Where a run's integration phase stands, and how each of its agents ended
    (the resolver's and the fixer's records). Stored inside the integration's JSON."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    """Nothing to integrate (no team succeeded, or ``isolation: shared``)."""


_T = TeamStatus
TEAM_TRANSITIONS: Mapping[TeamStatus, tuple[TeamStatus, ...]] = {
    _T.PENDING: (_T.RUNNING, _T.BLOCKED, _T.CANCELLED, _T.FAILED),
    _T.RUNNING: (_T.VERIFYING, _T.RETRYING, _T.FAILED, _T.CANCELLED, _T.PAUSED),
    _T.VERIFYING: (
        _T.SUCCEEDED, _T.RETRYING, _T.FAILED, _T.CANCELLED, _T.AWAITING_APPROVAL, _T.PAUSED,
    ),
    _T.RETRYING: (_T.RUNNING, _T.FAILED, _T.CANCELLED),
    # A team with approval: true waits after its work passed; a person decides.
    _T.AWAITING_APPROVAL: (_T.SUCCEEDED, _T.RETRYING, _T.FAILED, _T.CANCELLED),
    # A usage limit: the attempt did not count; the next one starts after the reset.
    _T.PAUSED: (_T.RUNNING, _T.RETRYING, _T.FAILED, _T.CANCELLED),
    _T.FAILED: (_T.RETRYING, _T.PENDING),
    _T.BLOCKED: (_T.PENDING, _T.FAILED, _T.CANCELLED),
    _T.CANCELLED: (_T.PENDING, _T.RETRYING, _T.RUNNING),
    _T.SUCCEEDED: (),
}
"""Team status -> the statuses it may move to (a cancelled team can be resumed)."""

_R = RunStatus
RUN_TRANSITIONS: Mapping[RunStatus, tuple[RunStatus, ...]] = {
    _R.PENDING: (_R.RUNNING, _R.FAILED, _R.CANCELLED),
    _R.RUNNING: (
        _R.INTEGRATING, _R.SUCCEEDED, _R.FAILED, _R.INTERRUPTED, _R.CANCELLED, _R.PAUSED,
    ),
    _R.INTEGRATING: (_R.SUCCEEDED, _R.FAILED, _R.INTERRUPTED, _R.CANCELLED),
    _R.INTERRUPTED: (_R.RUNNING, _R.INTEGRATING, _R.FAILED, _R.CANCELLED),
    _R.FAILED: (_R.RUNNING, _R.INTEGRATING, _R.CANCELLED),
    _R.CANCELLED: (_R.RUNNING,),
    # Waiting for a person: an approval, or a budget raised (`resume --budget-usd`).
    _R.PAUSED: (_R.RUNNING, _R.FAILED, _R.CANCELLED),
    _R.SUCCEEDED: (),
}
"""Run status -> the statuses it may move to (a failed, cancelled or interrupted run resumes)."""
del _T, _R



def _check_rows(table: Iterable[str], members: type[StrEnum]) -> None:
    """A member without its row of transitions fails the import (see the docstring, step 2)."""
    missing = set(members) ^ set(table)
    if missing:
        raise RuntimeError(f"{members.__name__}: no transitions row for {sorted(missing)}")


_check_rows(TEAM_TRANSITIONS, TeamStatus)
_check_rows(RUN_TRANSITIONS, RunStatus)
