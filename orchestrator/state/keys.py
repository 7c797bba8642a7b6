"""Every Redis key orchestrate uses, and nothing else.

One run's keys share the hash tag ``{RUN}``, so every Lua script of a run
touches keys of one Redis Cluster slot::

    orch:runs                              sorted set: run id -> created (epoch seconds)
    orch:{RUN}:meta                        hash: status, _created (ours, epoch seconds), created,
                                           updated, plan path/hash, base commit, tokens, cost, ...
    orch:{RUN}:epoch                       integer: bumped (INCR) by every lease acquisition
    orch:{RUN}:lock                        string (SET NX PX): the live orchestrator's lease, JSON
    orch:{RUN}:teams                       list: team ids in plan order
    orch:{RUN}:team:TEAM                   hash: status, attempt, agent_id, pid, branch, worktree,
                                           started, finished, exit_code, error, session_id,
                                           tokens, cost
    orch:{RUN}:attempt:TEAM:N              hash: one attempt (agent id, started/finished, exit code,
                                           reason, session id, tokens, cost)
    orch:{RUN}:deliverables:TEAM           hash: path -> content hash ("" when missing)
    orch:{RUN}:events                      stream: every state transition (capped)
    orch:{RUN}:log:TEAM                    stream: agent output lines (capped)
    orch:{RUN}:gate:TEAM                   hash: the team's approval gate: status (awaiting,
                                           approved, rejected), attempt, requested, by, at,
                                           note / reason
    orch:{RUN}:pauses                      hash: provider -> JSON {until, team, message}: usage
                                           limits; no agent of that provider starts before until
    orch:{RUN}:requests                    stream: requests to the live orchestrator
                                           (cancel or retry one team; capped)

The prefix (``orch``) is a setting so that tests and several installations can
share one server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.errors import UsageError

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # leading _: internal (_integration)


class InvalidIdError(UsageError, ValueError):
    """A run or team id that cannot be part of a key: bad usage (exit 2), and a ValueError."""


def check_name(kind: str, value: str) -> str:
    """``value`` if it is a safe key component (no braces, colons or spaces).

    Else :class:`InvalidIdError`: a :class:`~orchestrator.errors.UsageError` (the
    id came from the user: one line, exit 2) that is also a ``ValueError``.
    """
    if not _NAME_RE.fullmatch(value):
        raise InvalidIdError(f"{kind} {value!r} is not a valid id (letters, digits, '.', '-', '_')")
    return value


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix."""

    prefix: str = "orch"

    @property
    def runs(self) -> str:
        return f"{self.prefix}:runs"

    def _run(self, run_id: str) -> str:
        return f"{self.prefix}:{{{check_name('run', run_id)}}}"

    def meta(self, run_id: str) -> str:
        return f"{self._run(run_id)}:meta"

    def epoch(self, run_id: str) -> str:
        return f"{self._run(run_id)}:epoch"

    def lock(self, run_id: str) -> str:
        return f"{self._run(run_id)}:lock"

    def teams(self, run_id: str) -> str:
        return f"{self._run(run_id)}:teams"

    def team(self, run_id: str, team: str) -> str:
        return f"{self._run(run_id)}:team:{check_name('team', team)}"

    def attempt(self, run_id: str, team: str, attempt: int) -> str:
        return f"{self._run(run_id)}:attempt:{check_name('team', team)}:{int(attempt)}"

    def deliverables(self, run_id: str, team: str) -> str:
        return f"{self._run(run_id)}:deliverables:{check_name('team', team)}"

    def events(self, run_id: str) -> str:
        return f"{self._run(run_id)}:events"

    def log(self, run_id: str, team: str) -> str:
        return f"{self._run(run_id)}:log:{check_name('team', team)}"

    def gate(self, run_id: str, team: str) -> str:
        return f"{self._run(run_id)}:gate:{check_name('team', team)}"

    def pauses(self, run_id: str) -> str:
        return f"{self._run(run_id)}:pauses"

    def requests(self, run_id: str) -> str:
        return f"{self._run(run_id)}:requests"

    def run_pattern(self, run_id: str) -> str:
        """A SCAN pattern matching every key of one run (for deleting a run)."""
        return f"{self._run(run_id)}:*"
