"""What the integration phase did, as stored: pydantic records kept as JSON in Redis.

:class:`IntegrationResult` with its :class:`Conflict` s, :class:`SuiteRun` s,
:class:`AgentRecord` s and :class:`Bisection`, written by the integration phase
(:mod:`orchestrator.run.integration.phase`) under the pseudo-team :data:`STORE_NAME` and
read back by the report (:func:`load_result`), which so needs none of the
phase's machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.errors import OrchestrateError
from orchestrator.paths import INTEGRATION
from orchestrator.state.keys import check_name
from orchestrator.state.status import IntegrationStatus

if TYPE_CHECKING:
    from orchestrator.state.store import Store

__all__ = [
    "STORE_NAME",
    "AgentRecord",
    "Bisection",
    "Conflict",
    "IntegrationResult",
    "SuiteRun",
    "load_result",
]

STORE_NAME = check_name("team", INTEGRATION)
"""The integration's name in the store: its hash (phase, result), process records, log stream."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentRecord(_Record):
    """One run of the resolver or fixer agent."""

    role: str
    agent: str
    agent_id: str
    n: int
    started: float
    finished: float
    exit_code: int | None = None
    ok: bool = False
    reason: str | None = None
    log: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class SuiteRun(_Record):
    """One run of the test suite: on the integration (``round`` 0, then after each fix) or a
    bisection step (``prefix``: the teams merged at that point)."""

    purpose: Literal["integration", "bisect"]
    round: int = 0
    prefix: list[str] | None = None
    passed: bool
    started: float
    finished: float | None = None
    failed_command: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    logs: list[str] = Field(default_factory=list)
    tail: str = ""


class Conflict(_Record):
    """A merge conflict: the team being merged, the files, who changed each file before."""

    team: str
    files: list[str]
    others: dict[str, list[str]] = Field(default_factory=dict)
    resolved: bool = False
    resolver_agent_id: str | None = None
    resolution: str = ""

    def describe(self) -> str:
        """``src/app.py between db and auth; src/x.py between api and auth``."""
        parts = []
        for f in self.files:
            before = ", ".join(self.others.get(f) or []) or "an earlier merge"
            parts.append(f"{f} between {before} and {self.team}")
        return "; ".join(parts)


class Bisection(_Record):
    """Which merge broke the suite."""

    passes_with: list[str]
    culprit: str | None
    verdict: str
    tested: dict[str, bool] = Field(default_factory=dict)
    """Prefix length (teams merged) -> whether the suite passed there."""


class IntegrationResult(_Record):
    """What the integration phase did; ``ok`` when it merged and the suite passed."""

    status: IntegrationStatus
    reason: str | None = None
    phase: str = "start"
    isolation: str
    branch: str
    worktree: str
    base_commit: str
    head: str | None = None
    order: list[str] = Field(default_factory=list)
    merged: list[str] = Field(default_factory=list)
    left_out: list[str] = Field(default_factory=list)
    commits: dict[str, str] = Field(default_factory=dict)
    """Team -> the merge commit after it (the prefixes bisection tests)."""
    conflicts: list[Conflict] = Field(default_factory=list)
    suite: list[SuiteRun] = Field(default_factory=list)
    agents: list[AgentRecord] = Field(default_factory=list)
    test_passed: bool | None = None
    """None: no suite configured (or it never ran)."""
    bisection: Bisection | None = None
    started: float
    finished: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is IntegrationStatus.SUCCEEDED


async def load_result(store: Store, run_id: str) -> IntegrationResult | None:
    """The integration result recorded for ``run_id``, or None when it never ran."""
    try:
        state = await store.get_team(run_id, STORE_NAME)
    except OrchestrateError:
        return None
    raw = state.fields.get("result")
    if raw:
        return IntegrationResult.model_validate_json(raw)
    return None
