"""The scheduler: one anyio task group per run.

::

    async with open_store(settings, layout) as store:
        result = await start_run(loaded, store=store, layout=layout, notify=print_notice)

A run holds its lease (:meth:`Store.lease`) for its whole life and stops if it
loses it. The scheduler starts every team whose upstream teams succeeded, at
most ``max_parallel`` at once, in plan order when more are ready than there
are slots; each team is a :class:`~orchestrator.teamrun.TeamRunner` in the
run's task group. A team whose upstream team failed (or was blocked) is
``blocked``; independent teams go on. ``fail_fast`` stops starting teams after
the first failure; a spent ``budget`` stops starting teams and attempts.

With ``handle_signals`` (the CLI), SIGINT/SIGTERM stop the run: nothing new
starts, the agents' process groups are terminated, the running teams become
``cancelled`` and the run ``interrupted`` (resumable). See docs/engine.md.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import structlog
from anyio.abc import TaskGroup
from tenacity import RetryCallState, wait_exponential_jitter

from orchestrator import graph
from orchestrator.errors import OrchestrateError
from orchestrator.gitops import Git, shared_branch
from orchestrator.paths import SHARED_WORKTREE, StateLayout
from orchestrator.plan import Plan, Team
from orchestrator.planload import LoadedPlan
from orchestrator.runs import RunInfo, create_run
from orchestrator.store import Store, Usage
from orchestrator.teamrun import Notice, Notify, RunContext, TeamResult, TeamRunner

log = structlog.get_logger("orchestrate.engine")

_UNSUCCESSFUL = ("failed", "blocked", "cancelled")


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

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
        wait = wait_exponential_jitter(
            multiplier=self.backoff_initial, max=self.backoff_max, jitter=self.backoff_jitter
        )
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, retry_number)
        return float(wait(state))


class Budget:
    """Spending so far against the plan's budgets (run and team level)."""

    def __init__(self, plan: Plan, run_usage: Usage | None = None) -> None:
        self.plan = plan
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
        limit = self.plan.budget
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


@dataclass
class RunResult:
    """How a run ended."""

    run_id: str
    status: str
    """succeeded, failed or interrupted."""
    teams: dict[str, TeamResult] = field(default_factory=dict)
    reason: str | None = None
    base_ref: str = ""
    base_commit: str = ""

    @property
    def exit_code(self) -> int:
        return {"succeeded": 0, "interrupted": 130}.get(self.status, 1)


class Engine:
    """Drives one run from its first team to its end. Use :func:`start_run`."""

    def __init__(
        self,
        info: RunInfo,
        *,
        store: Store,
        layout: StateLayout,
        git: Git,
        options: EngineOptions,
        notify: Notify,
    ) -> None:
        self.info = info
        self.plan = info.loaded.plan
        self.store = store
        self.layout = layout
        self.git = git
        self.options = options
        self.notify = notify
        self.interrupted = False
        self.stop_reason: str | None = None
        self.results: dict[str, TeamResult] = {}

    def _say(self, status: str, detail: str = "", team: str | None = None) -> None:
        self.notify(Notice(time.time(), team, status, detail))

    async def run(self) -> RunResult:
        run_id = self.info.run_id
        structlog.contextvars.bind_contextvars(run=run_id)
        async with self.store.lease(run_id) as lease:
            ctx = RunContext(
                run_id=run_id,
                loaded=self.info.loaded,
                store=self.store,
                layout=self.layout,
                git=self.git,
                epoch=lease.epoch,
                base_commit=self.info.base_commit,
                options=self.options,
                budget=Budget(self.plan),
                notify=self.notify,
                results=self.results,
            )
            await self.store.run_transition(run_id, "running", epoch=lease.epoch)
            if self.plan.isolation == "shared":
                ctx.shared_worktree = self.layout.worktree(run_id, SHARED_WORKTREE)
                ctx.shared_branch = shared_branch(run_id)
                await self.git.add_worktree(
                    ctx.shared_worktree, ctx.shared_branch, self.info.base_commit
                )
            async with anyio.create_task_group() as tg:
                if self.options.handle_signals:
                    tg.start_soon(self._watch_signals, tg)
                await self._schedule(ctx, tg)
                tg.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                result = await self._finish(ctx)
        return result

    async def _watch_signals(self, tg: TaskGroup) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                self.interrupted = True
                name = signal.Signals(signum).name
                self._say("interrupted", f"{name}: stopping the agents")
                tg.cancel_scope.cancel()
                return

    async def _schedule(self, ctx: RunContext, tg: TaskGroup) -> None:
        plan = self.plan
        order = graph.topo_order(plan)
        deps = {t.id: t.depends_on for t in plan.teams}
        status = {t.id: "pending" for t in plan.teams}
        running: set[str] = set()
        limit = self.options.max_parallel or plan.max_parallel
        send, receive = anyio.create_memory_object_stream[TeamResult](max_buffer_size=math.inf)
        async with send, receive:
            while True:
                await self._block(ctx, order, deps, status)
                if self.stop_reason is None:
                    failed = [t for t, s in status.items() if s == "failed"]
                    if self.options.fail_fast and failed:
                        self.stop_reason = f"--fail-fast: team {failed[0]} failed"
                    else:
                        self.stop_reason = ctx.budget.exhausted(None)
                    if self.stop_reason is not None:
                        self._say("stopping", f"no new team starts: {self.stop_reason}")
                if self.stop_reason is None:
                    for team in plan.teams:
                        if len(running) >= limit:
                            break
                        ready = all(status[d] == "succeeded" for d in deps[team.id])
                        if status[team.id] == "pending" and ready:
                            status[team.id] = "running"
                            running.add(team.id)
                            tg.start_soon(self._run_team, ctx, team, send.clone())
                if not running:
                    return
                result = await receive.receive()
                running.discard(result.team)
                status[result.team] = result.status
                self.results[result.team] = result

    async def _block(
        self,
        ctx: RunContext,
        order: list[str],
        deps: dict[str, tuple[str, ...]],
        status: dict[str, str],
    ) -> None:
        """Mark ``blocked`` every pending team with an unsuccessful upstream team (cascading)."""
        for tid in order:
            bad = [d for d in deps[tid] if status[d] in _UNSUCCESSFUL]
            if status[tid] != "pending" or not bad:
                continue
            reason = f"upstream team {bad[0]} {status[bad[0]]}"
            await self.store.team_transition(
                ctx.run_id, tid, "blocked", epoch=ctx.epoch, attempt=0, reason=reason
            )
            status[tid] = "blocked"
            self.results[tid] = TeamResult(team=tid, status="blocked", reason=reason)
            self._say("blocked", reason, tid)

    async def _run_team(
        self,
        ctx: RunContext,
        team: Team,
        send: anyio.abc.ObjectSendStream[TeamResult],
    ) -> None:
        async with send:
            structlog.contextvars.bind_contextvars(team=team.id)
            result = await TeamRunner(ctx, team).run()
            await send.send(result)

    async def _finish(self, ctx: RunContext) -> RunResult:
        run_id = ctx.run_id
        teams = await self.store.get_teams(run_id)
        results: dict[str, TeamResult] = {}
        for team in self.plan.teams:
            res = self.results.get(team.id)
            state = teams.get(team.id)
            status = state.status if state else (res.status if res else "pending")
            if res is None:
                res = TeamResult(team=team.id, status=status)
                if state is not None:
                    res.attempts = state.attempt
                    res.branch = state.branch
                    res.reason = state.reason
                if status == "pending" and self.stop_reason:
                    res.reason = f"not started: {self.stop_reason}"
            res.status = status
            results[team.id] = res
        if self.interrupted:
            final, reason = "interrupted", "interrupted; `orchestrate resume` finishes it"
        elif all(r.status == "succeeded" for r in results.values()):
            final, reason = "succeeded", None
        else:
            failed = [t for t, r in results.items() if r.status == "failed"]
            blocked = [t for t, r in results.items() if r.status == "blocked"]
            parts = []
            if failed:
                parts.append("failed: " + ", ".join(failed))
            if blocked:
                parts.append("blocked: " + ", ".join(blocked))
            if self.stop_reason:
                parts.append(self.stop_reason)
            final, reason = "failed", "; ".join(parts) or "not every team succeeded"
        await self.store.run_transition(
            run_id, final, epoch=ctx.epoch, reason=reason, fields={"finished": repr(time.time())}
        )
        self._say(final, reason or "every team succeeded")
        return RunResult(
            run_id=run_id,
            status=final,
            teams=results,
            reason=reason,
            base_ref=self.info.base_ref,
            base_commit=self.info.base_commit,
        )


def _quiet(_: Notice) -> None:
    return None


async def start_run(
    loaded: LoadedPlan,
    *,
    store: Store,
    layout: StateLayout,
    options: EngineOptions | None = None,
    notify: Notify | None = None,
    on_created: Callable[[RunInfo], None] | None = None,
) -> RunResult:
    """Create a run of ``loaded`` and drive it to its end."""
    git = Git(loaded.repo_root)
    layout.ensure()
    info = await create_run(store, layout, loaded, git)
    if on_created is not None:
        on_created(info)
    engine = Engine(
        info,
        store=store,
        layout=layout,
        git=git,
        options=options or EngineOptions(),
        notify=notify or _quiet,
    )
    try:
        return await engine.run()
    except BaseExceptionGroup as group:
        raise _first_error(group) from group


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a task group's exception group: an OrchestrateError first."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for sub in exc.exceptions:
                walk(sub)
        else:
            leaves.append(exc)

    walk(group)
    for leaf in leaves:
        if isinstance(leaf, OrchestrateError):
            return leaf
    for leaf in leaves:
        if not isinstance(leaf, anyio.get_cancelled_exc_class()):
            return leaf
    return group
