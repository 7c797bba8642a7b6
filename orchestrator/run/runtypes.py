"""The types a run shares: its context, options, budget, notices and team results.

The scheduler (:mod:`orchestrator.run.engine`, :mod:`orchestrator.run.teamrun`), the
integration phase, resume and the CLI all speak these; they live here so that
nothing imports the scheduler just for a type.

- :class:`RunContext`: what every team of one run shares (the store, the lease
  epoch, the plan, results so far, the executor, the live agents).
- :class:`EngineOptions`: how a run is driven (parallelism, backoff, grace,
  signals, the executor's name).
- :class:`Spending`: spending so far against the plan's budgets.
- :class:`Notice` / :data:`Notify`: one user-facing line and who prints it.
- :class:`TeamResult`: how a team ended. :class:`Recovery`: how a resumed team
  goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from tenacity import RetryCallState, wait_exponential_jitter

from orchestrator.agents.prompts import Feedback
from orchestrator.agents.runner import LiveAgents
from orchestrator.gitops import Git
from orchestrator.paths import StateLayout
from orchestrator.plan import graph
from orchestrator.plan.load import LoadedPlan
from orchestrator.plan.models import Budget as PlanBudget
from orchestrator.plan.models import Plan, Team
from orchestrator.run.executor import AttemptRecord, Executor
from orchestrator.state.pauses import Pause
from orchestrator.state.status import TeamStatus
from orchestrator.state.store import Store, Usage

if TYPE_CHECKING:
    from orchestrator.state.lease import Lease

__all__ = [
    "AttemptRecord",
    "EngineOptions",
    "Notice",
    "Notify",
    "Recovery",
    "RunContext",
    "Spending",
    "TeamResult",
]


@dataclass(frozen=True)
class EngineOptions:
    """How a run is driven (the plan says what; these say how).

    ``backoff_*`` shape the pause before a retry: tenacity's exponential
    backoff with jitter, ``initial * 2**(n-1)`` plus up to ``jitter`` seconds,
    at most ``max`` (tests make them tiny).
    """

    max_parallel: int | None = None
    fail_fast: bool = False
    backoff_initial: float = 2.0
    backoff_max: float = 60.0
    backoff_jitter: float = 2.0
    kill_grace: float = 5.0
    handle_signals: bool = False
    integrate_partial: bool = False
    """Integrate the teams that succeeded even when others did not (``--integrate-partial``)."""
    executor: str = "local"
    """Where attempts run (:func:`orchestrator.run.executor.open_executor`)."""
    ray_address: str = "auto"
    """The Ray cluster of the ``ray`` executor (``auto``: the one started on this machine)."""

    def run_fields(self) -> dict[str, str]:
        """What a run records of these, so that a resume goes on the same way."""
        fields = {"executor": self.executor}
        if self.executor == "ray":
            fields["ray_address"] = self.ray_address
        return fields

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
        wait = wait_exponential_jitter(
            multiplier=self.backoff_initial, max=self.backoff_max, jitter=self.backoff_jitter
        )
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, retry_number)
        return float(wait(state))


class Spending:
    """Spending so far against the plan's budgets (run and team level)."""

    def __init__(
        self, plan: Plan, run_usage: Usage | None = None, limit: PlanBudget | None = None
    ) -> None:
        self.plan = plan
        self.limit = limit if limit is not None else plan.budget
        """The run's budget: the plan's, or as a person raised it (``resume --budget-usd``)."""
        self.tokens = run_usage.tokens if run_usage else 0
        self.usd = run_usage.cost_usd if run_usage else 0.0
        self.team_tokens: dict[str, int] = {}
        self.team_usd: dict[str, float] = {}

    def add(self, team: str, usage: Usage) -> None:
        self.tokens += usage.tokens
        self.usd += usage.cost_usd
        self.team_tokens[team] = self.team_tokens.get(team, 0) + usage.tokens
        self.team_usd[team] = self.team_usd.get(team, 0.0) + usage.cost_usd

    def exhausted(self, team: Team | None) -> str | None:
        """Why nothing more may start (for ``team``, or the run as a whole), or None."""
        limit = self.limit
        if limit is not None:
            if limit.tokens is not None and self.tokens >= limit.tokens:
                return f"the run's budget is spent: {self.tokens} of {limit.tokens} tokens"
            if limit.usd is not None and self.usd >= limit.usd:
                return f"the run's budget is spent: ${self.usd:.2f} of ${limit.usd:.2f}"
        if team is not None and team.budget is not None:
            tokens = self.team_tokens.get(team.id, 0)
            usd = self.team_usd.get(team.id, 0.0)
            if team.budget.tokens is not None and tokens >= team.budget.tokens:
                return f"the team's budget is spent: {tokens} of {team.budget.tokens} tokens"
            if team.budget.usd is not None and usd >= team.budget.usd:
                return f"the team's budget is spent: ${usd:.2f} of ${team.budget.usd:.2f}"
        return None


@dataclass(frozen=True)
class Recovery:
    """How a resumed team goes on (see :mod:`orchestrator.run.resume`).

    With ``attach``: follow that attempt (running, or ended and not yet judged)
    to its end, then judge it as usual. Without: start attempt ``attempt``
    (with ``feedback`` when there was one before).
    """

    attempt: int
    max_attempts: int
    attach: AttemptRecord | None = None
    feedback: Feedback | None = None
    session_id: str | None = None
    awaiting: bool = False
    """Attempt ``attempt`` passed and waits at the team's approval gate: no agent runs,
    the decision (made meanwhile, or still to come) is read from the store."""


@dataclass(frozen=True)
class Notice:
    """One user-facing line: what happened to which team."""

    at: float
    team: str | None
    status: str
    detail: str = ""


Notify = Callable[[Notice], None]


@dataclass
class TeamResult:
    """How a team ended (what the summary and downstream prompts use)."""

    team: str
    status: TeamStatus
    attempts: int = 0
    branch: str | None = None
    reason: str | None = None
    files: list[str] = field(default_factory=list)
    final_message: str | None = None
    resume: Recovery | None = None
    """Status ``paused`` (a usage limit), or ``budget_spent``: how the team goes on once its
    provider may start agents again (the scheduler starts it then), or a resume."""
    budget_spent: bool = False
    """A spent budget (the team's or the run's) stopped it as it was: it waits for a person
    to raise the budget (``resume --budget-usd``); its status is the store's."""


@dataclass
class RunContext:
    """What every team of one run shares."""

    run_id: str
    loaded: LoadedPlan
    store: Store
    layout: StateLayout
    git: Git
    epoch: int
    base_commit: str
    options: EngineOptions
    budget: Spending
    notify: Notify
    results: dict[str, TeamResult] = field(default_factory=dict)
    shared_worktree: Path | None = None
    shared_branch: str | None = None
    commit_lock: anyio.Lock = field(default_factory=anyio.Lock)
    lease: Lease | None = None
    stale: bool = False
    """A write was refused: another orchestrator owns the run now."""
    cancel_requested: anyio.Event = field(default_factory=anyio.Event)
    """``orchestrate cancel`` marked the run cancelled; the engine stops it."""
    detached: bool = False
    """The orchestrator is going away (SIGHUP) and leaves the agents running for a resume."""
    cancel_reason: str | None = None
    """The run's reason once cancelled (``cancelled by <host> pid <n>``): each stopped
    team's reason says it."""
    live: LiveAgents = field(default_factory=LiveAgents)
    """The agents followed now: a further signal while stopping SIGKILLs them."""
    executor: Executor | None = None
    """Where the attempts run (:mod:`orchestrator.run.executor`); the engine sets it."""
    awaiting: set[str] = field(default_factory=set)
    """Teams waiting at their approval gate now (the scheduler ends the run, ``paused``,
    when only these are left)."""
    budget_stop: str | None = None
    """A ``hard: true`` budget was reached: why the running attempts are being stopped."""
    hard_stop: anyio.Event = field(default_factory=anyio.Event)
    """Set with :attr:`budget_stop`: the engine stops every running attempt."""
    pauses: dict[str, Pause] = field(default_factory=dict)
    """Providers whose usage limit was hit, by provider (:mod:`orchestrator.state.pauses`): no
    agent of theirs starts before the pause ends. Read from the store at the run's start."""
    on_awaiting: Callable[[str], None] | None = None
    """Called with a team id when it starts waiting for approval (the engine posts the
    ``awaiting_approval`` webhook)."""
    _topo_index: dict[str, int] | None = None
    _teams: dict[str, Team] | None = None

    def team(self, team_id: str) -> Team:
        """The plan's team ``team_id``, from an index built once per run (cheaper than
        :meth:`Plan.team` when asked for every upstream team of every team)."""
        if self._teams is None:
            self._teams = {}
            for t in self.plan.teams:
                self._teams.setdefault(t.id, t)
        return self._teams[team_id]

    def upstream(self, team_id: str) -> list[str]:
        """Every team ``team_id`` depends on, directly or not, in dependency order
        (:func:`graph.upstream`, with the plan's order computed once per run)."""
        if self._topo_index is None:
            self._topo_index = {t: i for i, t in enumerate(graph.topo_order(self.plan))}
        return graph.upstream(self.plan, team_id, order=self._topo_index)

    @property
    def plan(self) -> Plan:
        return self.loaded.plan

    def provider(self, team: Team) -> str:
        """Whose quota ``team``'s agent spends (:func:`orchestrator.agents.limits.provider_of`)."""
        from orchestrator.agents.limits import provider_of

        config = self.plan.agent_config(self.plan.agent_name(team))
        return provider_of(config.kind or "", team.model or config.model)

    @property
    def lost(self) -> bool:
        """This orchestrator no longer owns the run: leave its agents to the new owner."""
        return self.stale or (self.lease is not None and self.lease.lost.is_set())

    @property
    def leaves_agents(self) -> bool:
        """Stopping leaves the agents running and their teams as they are: another
        orchestrator owns the run, or this one detached from it (SIGHUP)."""
        return self.detached or self.lost
