"""The state models the store reads back: runs, teams, attempts, events, log lines, usage.

Frozen pydantic models, built from Redis hashes and stream entries by
:class:`~orchestrator.state.store.Store` (which re-exports them: import them from
either module). Stored values are strings; the ``parse_*`` helpers read them
leniently (an empty or malformed value is None).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.state.status import RunStatus, TeamStatus

__all__ = [
    "AttemptState",
    "Event",
    "LeaseHolder",
    "LogEntry",
    "RunState",
    "TeamState",
    "Usage",
    "event_from",
    "lease_holder_from",
    "log_entry_from",
    "parse_float",
    "parse_int",
    "parse_time",
]


def parse_float(value: str | None) -> float | None:
    """A stored number, or None when empty or not a number."""
    try:
        return float(value) if value else None
    except ValueError:
        return None


def parse_int(value: str | None) -> int | None:
    """A stored integer, or None when empty or not an integer."""
    try:
        return int(value) if value else None
    except ValueError:
        return None


def parse_time(value: str | None) -> float | None:
    """Epoch seconds from a number or an ISO 8601 time (``2025-01-31T12:00:00+00:00``).

    The one reader of stored times. A time without an offset is UTC, as every time
    orchestrate writes is (``runs`` stamps ``created`` in UTC): a stored time means
    the same instant whatever the reader's time zone. None when empty or unreadable.
    """
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Usage(_Frozen):
    """Tokens and money one attempt, team or run spent."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> Usage:
        return cls(
            input_tokens=parse_int(h.get("input_tokens")) or 0,
            output_tokens=parse_int(h.get("output_tokens")) or 0,
            cost_usd=parse_float(h.get("cost_usd")) or 0.0,
        )


class RunState(_Frozen):
    run_id: str
    status: RunStatus
    epoch: int
    created: float | None
    updated: float | None
    team_ids: list[str]
    usage: Usage
    meta: dict[str, str]
    """Every field of the run's hash, as stored (plan path, plan hash, base commit, ...)."""


class AttemptState(_Frozen):
    team: str
    attempt: int
    status: str | None
    agent_id: str | None
    started: float | None
    finished: float | None
    exit_code: int | None
    reason: str | None
    session_id: str | None
    usage: Usage
    fields: dict[str, str]

    @classmethod
    def from_hash(cls, team: str, attempt: int, h: Mapping[str, str]) -> AttemptState:
        return cls(
            team=team,
            attempt=attempt,
            status=h.get("status"),
            agent_id=h.get("agent_id"),
            started=parse_float(h.get("started")),
            finished=parse_float(h.get("finished")),
            exit_code=parse_int(h.get("exit_code")),
            reason=h.get("reason"),
            session_id=h.get("session_id"),
            usage=Usage.from_hash(h),
            fields=dict(h),
        )


class TeamState(_Frozen):
    run_id: str
    team: str
    status: TeamStatus
    attempt: int
    agent_id: str | None
    pid: int | None
    branch: str | None
    worktree: str | None
    started: float | None
    finished: float | None
    exit_code: int | None
    error: str | None
    reason: str | None
    session_id: str | None
    usage: Usage
    deliverables: dict[str, str | None]
    """path -> content hash; ``None`` when the deliverable is missing."""
    fields: dict[str, str]
    """Every field of the team's hash, as stored."""


class Event(_Frozen):
    """One entry of a run's event stream."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    id: str
    type: str
    """``run``, ``team`` or ``lease``."""
    team: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str
    attempt: int | None = None
    epoch: int = 0
    reason: str | None = None
    ts: float


class LogEntry(_Frozen):
    """One stored output line: its stream id, and its number ``n`` within its attempt.

    ``n`` counts an attempt's lines from 1 across every ``append_log`` call; a
    reader that sees it jump knows how many lines of the attempt it missed.
    It is 0 for entries written before line numbers existed.
    """

    id: str
    team: str
    attempt: int
    line: str
    n: int = 0


class LeaseHolder(_Frozen):
    host: str
    pid: int
    since: float
    token: str


def log_entry_from(team: str, entry_id: str, f: Mapping[str, str]) -> LogEntry:
    """A log stream entry (``a``, ``n``, ``l``) as a :class:`LogEntry`."""
    return LogEntry(
        id=entry_id,
        team=team,
        attempt=parse_int(f.get("a")) or 0,
        line=f.get("l", ""),
        n=parse_int(f.get("n")) or 0,
    )


def event_from(entry_id: str, f: Mapping[str, str]) -> Event:
    """An event stream entry as an :class:`Event`."""
    return Event(
        id=entry_id,
        type=f.get("type", ""),
        team=f.get("team") or None,
        **{"from": f.get("from") or None},
        to=f.get("to", ""),
        attempt=parse_int(f.get("attempt")),
        epoch=parse_int(f.get("epoch")) or 0,
        reason=f.get("reason") or None,
        ts=parse_float(f.get("ts")) or 0.0,
    )


def lease_holder_from(raw: str) -> LeaseHolder | None:
    """The lease key's JSON as a :class:`LeaseHolder`; None when unreadable."""
    try:
        return LeaseHolder.model_validate_json(raw)
    except ValueError:
        return None
