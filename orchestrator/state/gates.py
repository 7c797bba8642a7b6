"""Approval gates: a person says go or no-go on a team's work before its dependents start.

A team with ``approval: true`` that has succeeded waits for a decision. The
gate is one hash per team (``orch:{RUN}:gate:TEAM``, see :mod:`orchestrator.state.keys`)
and every change of it appends an event (``type: gate``) to the run's event
stream in the same Lua script, so who decided and when is in the events and
the report::

    await request_gate(store, run, "api", attempt=2)        # the scheduler: api waits
    await decide(store, run, "api", Decision.APPROVE, by="ana@laptop", text="LGTM")
    gate = await get_gate(store, run, "api")                 # GateState(status=approved, ...)

The record outlives every process: ``orchestrate approve`` (another terminal,
another machine) writes it while ``run`` waits, or while no orchestrator runs
at all; the next scheduler, or ``resume``, reads it. A request for an attempt
that has already been decided keeps the decision (a resume re-asking after a
crash does not undo it); a request for a later attempt (after a rejection)
opens a new gate. Deciding twice, or deciding a team that is not waiting, is
refused with the gate's state in the message (:class:`GateError`, exit 2).
"""

from __future__ import annotations

import getpass
import json
import socket
import time
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import StoreError, UsageError

if TYPE_CHECKING:
    from orchestrator.state.store import Store

__all__ = [
    "MAX_TEXT",
    "Decision",
    "GateAction",
    "GateError",
    "GateState",
    "GateStatus",
    "approve_command",
    "decide",
    "decider",
    "get_gate",
    "get_gates",
    "reject_command",
    "rejection_feedback",
    "request_gate",
]

MAX_TEXT = 4000
"""Characters of a note or reason kept (it goes into a prompt and the report)."""


class GateStatus(StrEnum):
    """Where a gate stands."""

    AWAITING = "awaiting"
    APPROVED = "approved"
    REJECTED = "rejected"


class Decision(StrEnum):
    """What a person decides."""

    APPROVE = "approved"
    REJECT = "rejected"


class GateError(UsageError):
    """A decision that cannot be taken: the team is not waiting, or was decided already."""


class GateState(BaseModel):
    """One team's gate as stored."""

    model_config = ConfigDict(frozen=True)

    team: str
    status: GateStatus
    attempt: int
    requested: float
    by: str | None = None
    at: float | None = None
    note: str | None = None
    """What the approver said (approve --note)."""
    reason: str | None = None
    """Why it was rejected: the feedback of the team's next attempt."""

    @property
    def decided(self) -> bool:
        return self.status is not GateStatus.AWAITING


# KEYS: gate, events
# ARGV: team, attempt, now, events cap
_REQUEST = """
local status = redis.call('HGET', KEYS[1], 'status')
local attempt = redis.call('HGET', KEYS[1], 'attempt')
if status and attempt == ARGV[2] then return status end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'status', 'awaiting', 'attempt', ARGV[2], 'requested', ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*',
  'type', 'gate', 'team', ARGV[1], 'from', '', 'to', 'awaiting', 'attempt', ARGV[2],
  'reason', '', 'ts', ARGV[3])
return 'awaiting'
"""

# KEYS: gate, events
# ARGV: team, decision, by, now, text, events cap, attempt ('' = whichever is waiting)
_DECIDE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return redis.error_reply('NO_GATE') end
local attempt = redis.call('HGET', KEYS[1], 'attempt')
if status ~= 'awaiting' then
  local by = redis.call('HGET', KEYS[1], 'by') or ''
  local at = redis.call('HGET', KEYS[1], 'at') or ''
  return redis.error_reply('DECIDED ' .. status .. ' ' .. attempt .. ' ' .. at .. ' ' .. by)
end
if ARGV[7] ~= '' and ARGV[7] ~= attempt then
  return redis.error_reply('ATTEMPT ' .. attempt)
end
local field = 'note'
if ARGV[2] == 'rejected' then field = 'reason' end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'by', ARGV[3], 'at', ARGV[4], field, ARGV[5])
local said = ARGV[2] .. ' by ' .. ARGV[3]
if ARGV[5] ~= '' then said = said .. ': ' .. ARGV[5] end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*',
  'type', 'gate', 'team', ARGV[1], 'from', 'awaiting', 'to', ARGV[2], 'attempt', attempt,
  'reason', said, 'by', ARGV[3], 'ts', ARGV[4])
return attempt
"""


def decider() -> str:
    """Who is deciding: ``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _gate_from(team: str, raw: dict[str, str]) -> GateState | None:
    if not raw.get("status"):
        return None
    return GateState(
        team=team,
        status=GateStatus(raw["status"]),
        attempt=int(raw.get("attempt") or 0),
        requested=float(raw.get("requested") or 0.0),
        by=raw.get("by") or None,
        at=float(raw["at"]) if raw.get("at") else None,
        note=raw.get("note") or None,
        reason=raw.get("reason") or None,
    )


async def request_gate(store: Store, run_id: str, team: str, *, attempt: int) -> GateState:
    """Open the team's gate for ``attempt`` (idempotent); returns the gate as it now stands.

    A decision already taken on this attempt is kept and returned.
    """
    keys = [store.keys.gate(run_id, team), store.keys.events(run_id)]
    args = [team, str(int(attempt)), repr(time.time()), str(store.settings.event_stream_cap)]
    redis = store._redis  # one Lua call per change, like the store's own
    await store._call(lambda: redis.eval(_REQUEST, len(keys), *keys, *args))
    gate = await get_gate(store, run_id, team)
    assert gate is not None
    return gate


async def get_gate(store: Store, run_id: str, team: str) -> GateState | None:
    """The team's gate, or None when it never had one."""
    key = store.keys.gate(run_id, team)
    redis = store._redis
    raw: dict[str, str] = await store._call(lambda: redis.hgetall(key))
    return _gate_from(team, raw)


async def get_gates(store: Store, run_id: str, teams: list[str]) -> dict[str, GateState]:
    """The gates of ``teams`` that exist, in one round trip."""
    redis = store._redis

    async def go() -> list[dict[str, str]]:
        pipe = redis.pipeline(transaction=False)
        for team in teams:
            pipe.hgetall(store.keys.gate(run_id, team))
        got: list[dict[str, str]] = await pipe.execute()
        return got

    found = await store._call(go)
    gates = {}
    for team, raw in zip(teams, found, strict=True):
        gate = _gate_from(team, raw)
        if gate is not None:
            gates[team] = gate
    return gates


def _when(at: str) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(at)))
    except ValueError:
        return "?"


async def decide(
    store: Store,
    run_id: str,
    team: str,
    decision: Decision,
    *,
    by: str,
    text: str = "",
    attempt: int | None = None,
) -> GateState:
    """Approve or reject the team's waiting gate (of ``attempt``, if given), atomically.

    Raises :class:`GateError` when the team has no waiting gate (naming what
    it has instead).
    """
    text = " ".join(text.split())[:MAX_TEXT]  # one line: it becomes an event and a prompt line
    if decision is Decision.REJECT and not text:
        raise GateError("a rejection needs a reason (--reason): it is the team's next feedback")
    keys = [store.keys.gate(run_id, team), store.keys.events(run_id)]
    args = [
        team,
        decision.value,
        by,
        repr(time.time()),
        text,
        str(store.settings.event_stream_cap),
        "" if attempt is None else str(int(attempt)),
    ]
    redis = store._redis
    try:
        await store._call(lambda: redis.eval(_DECIDE, len(keys), *keys, *args))
    except StoreError as exc:
        raise _refusal(run_id, team, str(exc)) from exc
    gate = await get_gate(store, run_id, team)
    assert gate is not None
    return gate


def _refusal(run_id: str, team: str, said: str) -> GateError | StoreError:
    words = said.split("refused: ", 1)[-1].split()
    if not words:
        return StoreError(said)
    if words[0] == "NO_GATE":
        return GateError(f"team {team} of run {run_id} is not waiting for approval")
    if words[0] == "DECIDED" and len(words) >= 4:
        status, attempt, at = words[1], words[2], words[3]
        by = " ".join(words[4:]) or "someone"
        return GateError(
            f"team {team} (attempt {attempt}) was already {status} by {by} at {_when(at)}"
        )
    if words[0] == "ATTEMPT" and len(words) >= 2:
        return GateError(f"team {team} is waiting for approval of attempt {words[1]}, not that one")
    return StoreError(said)


class GateAction(StrEnum):
    """What the scheduler does about a team whose work waits at its gate."""

    WAIT = "wait"
    """No decision yet: the team stays ``awaiting_approval``, its dependents wait."""
    RELEASE = "release"
    """Approved: the team has succeeded, its dependents may start."""
    RETRY = "retry"
    """Rejected with attempts left: another attempt, the reason as its feedback."""
    FAIL = "fail"
    """Rejected with the retries spent: the team fails with the reason."""


def gate_action(gate: GateState | None, *, attempt: int, max_attempts: int) -> GateAction:
    """The scheduler's move for a team's gate at ``attempt`` (of at most ``max_attempts``).

    A gate of another attempt than the team's current one (or none at all) is
    no decision about this attempt's work: wait.
    """
    if gate is None or gate.attempt != attempt or gate.status is GateStatus.AWAITING:
        return GateAction.WAIT
    if gate.status is GateStatus.APPROVED:
        return GateAction.RELEASE
    return GateAction.RETRY if attempt < max_attempts else GateAction.FAIL


def rejection_feedback(gate: GateState) -> str:
    """The rejection as the next attempt's feedback (and the failure's reason)."""
    who = gate.by or "a reviewer"
    return f"attempt {gate.attempt} was rejected at review by {who}: {gate.reason or ''}".rstrip()


def approve_command(run_id: str, team: str) -> str:
    """What a person runs to approve (shown by the board, `run`, webhooks)."""
    return f"orchestrate approve {run_id} {team}"


def reject_command(run_id: str, team: str) -> str:
    """What a person runs to reject, with the reason to fill in."""
    return f'orchestrate reject {run_id} {team} --reason "..."'


def gate_json(gate: GateState) -> str:
    """The gate as one JSON object (for ``status --json`` and webhooks)."""
    return json.dumps(gate.model_dump(mode="json"))
