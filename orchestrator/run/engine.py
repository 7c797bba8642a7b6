"""The scheduler: one anyio task group per run.

::

    async with open_store(settings, layout) as store:
        result = await start_run(loaded, store=store, layout=layout, notify=print_notice)

A run holds its lease (:meth:`Store.lease`) for its whole life and stops if it
loses it. The scheduler starts every team whose upstream teams succeeded, at
most ``max_parallel`` at once, in plan order when more are ready than there
are slots; each team is a :class:`~orchestrator.run.teamrun.TeamRunner` in the
run's task group. A team whose upstream team failed (or was blocked) is
``blocked``; independent teams go on. ``fail_fast`` stops starting teams after
the first failure; a spent ``budget`` stops starting teams and attempts.

With ``handle_signals`` (the CLI), SIGINT/SIGTERM stop the run: nothing new
starts, the agents' process groups are terminated, the running teams become
``cancelled`` and the run ``interrupted`` (resumable). The handlers stay for
the whole stop: a further SIGINT/SIGTERM meanwhile SIGKILLs every agent group
at once instead of waiting out the grace period, and the run still ends
recorded (each team ``cancelled`` once its agent is gone). SIGHUP (a closed terminal,
a dropped ssh session) detaches instead: the agents go on under their
supervisors, their teams stay ``running``, the run is ``interrupted`` and a
resume re-attaches them. ``orchestrate cancel``
(another process) marks the run ``cancelled``; a watcher here notices and
stops the run the same way. When the teams are done, the integration phase
(:mod:`orchestrator.run.integration.phase`) merges and tests their branches.

A resume (:mod:`orchestrator.run.resume`) drives the same :class:`Engine` with a
``setup`` step that runs under the lease before scheduling: it reconciles the
store and the disk and says, per team, how it goes on. See docs/engine.md.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import structlog
from anyio.abc import TaskGroup

from orchestrator.errors import OrchestrateError, StoreError
from orchestrator.gitops import Git, shared_branch
from orchestrator.paths import SHARED_WORKTREE, StateLayout
from orchestrator.plan import graph
from orchestrator.plan.load import LoadedPlan
from orchestrator.plan.models import Team
from orchestrator.run.control import LiveControl
from orchestrator.run.executor import check_executor, open_executor
from orchestrator.run.notify import Notifier
from orchestrator.run.runtypes import (
    EngineOptions,
    Notice,
    Notify,
    Recovery,
    RunContext,
    Spending,
    TeamResult,
)
from orchestrator.run.teamrun import TeamRunner
from orchestrator.run.verdict import RunFacts, run_verdict
from orchestrator.state.pauses import active_pauses, seconds_left
from orchestrator.state.runs import RunInfo, create_run, record_crash
from orchestrator.state.status import RunStatus, TeamStatus
from orchestrator.state.store import Store

if TYPE_CHECKING:
    from orchestrator.run.integration.phase import IntegrationResult

__all__ = [  # the run-wide types are defined in runtypes; older callers import them from here
    "Engine",
    "EngineOptions",
    "RunResult",
    "Spending",
    "StartState",
    "first_error",
    "start_run",
    "write_report",
]

log = structlog.get_logger("orchestrate.engine")

EXIT_AWAITING_APPROVAL = 3
"""``run`` / ``resume`` exit code: only teams waiting for approval are left (the run is
``paused``): `orchestrate approve` or `reject` them, then `orchestrate resume`."""
EXIT_BUDGET = 4
"""``run`` / ``resume`` exit code: the budget is spent (the run is ``paused``):
`orchestrate resume RUN --budget-usd N` raises it and goes on."""
IDLE_POLL = 0.5
"""Seconds between looks at the teams while the scheduler waits (gates, pauses)."""
CANCEL_POLL = 0.5
"""Seconds between looks at the run's status (has ``orchestrate cancel`` cancelled it?)."""


@dataclass
class StartState:
    """Where each team stands when scheduling begins (a resume fills it from the store)."""

    status: dict[str, TeamStatus] = field(default_factory=dict)
    """Team -> its status in the store (a team not named is pending)."""
    recoveries: dict[str, Recovery] = field(default_factory=dict)
    """Teams the scheduler goes on with, whatever their status: re-attached at once
    (``attach``), or started when their upstream teams allow, as pending teams are."""


Setup = Callable[[RunContext], Awaitable[StartState]]


@dataclass
class RunResult:
    """How a run ended."""

    run_id: str
    status: RunStatus
    """succeeded, failed, interrupted or cancelled."""
    teams: dict[str, TeamResult] = field(default_factory=dict)
    reason: str | None = None
    base_ref: str = ""
    base_commit: str = ""
    integration: IntegrationResult | None = None

    paused_for: str | None = None
    """Why a ``paused`` run waits for a person: ``approval`` or ``budget``."""
    awaiting: list[str] = field(default_factory=list)
    """The teams waiting for approval when the run paused."""

    @property
    def exit_code(self) -> int:
        if self.status is RunStatus.PAUSED:
            return EXIT_BUDGET if self.paused_for == "budget" else EXIT_AWAITING_APPROVAL
        return self.status.exit_code


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
        setup: Setup | None = None,
        on_started: Callable[[str], None] | None = None,
    ) -> None:
        self.info = info
        self.setup = setup
        self.on_started = on_started
        self.plan = info.loaded.plan
        self.store = store
        self.layout = layout
        self.git = git
        self.options = options
        self.notify = notify
        self.interrupted = False
        self.detached = False
        """SIGHUP: the agents were left running for a resume to re-attach."""
        self.cancelled = False
        self.stop_reason: str | None = None
        self.paused_for: str | None = None
        """The run stops to wait for a person: ``approval`` (only gates are left) or
        ``budget`` (spent: nothing new starts; the running attempts finish)."""
        self.budget_reasons: dict[str, str] = {}
        """Teams stopped by a spent budget, and which budget."""
        self.results: dict[str, TeamResult] = {}
        self.integration: IntegrationResult | None = None
        self.notifier = Notifier.for_plan(self.plan)
        self._posts: TaskGroup | None = None
        self._ctx: RunContext | None = None
        self._tg: TaskGroup | None = None
        self._stopping = False
        """A signal asked the run to stop (its task group is cancelled as soon as it exists)."""
        self.control = LiveControl()
        """Cancel or retry one team on request (`orchestrate cancel-team` / `retry-team`)."""

    def _say(self, status: str, detail: str = "", team: str | None = None) -> None:
        self.notify(Notice(time.time(), team, status, detail))

    async def run(self) -> RunResult:
        """Drive the run to its end; then write the reports and post the run's end.

        Webhook posts (:mod:`orchestrator.run.notify`) go to a task group of their
        own: a team failure is posted while the run goes on, and the run waits
        for those posts (bounded by the notifier's deadline) only at its end.
        """
        run_id = self.info.run_id
        structlog.contextvars.bind_contextvars(run=run_id)
        async with anyio.create_task_group() as guard:
            if self.options.handle_signals:  # until the run is recorded and reported
                await guard.start(self._watch_signals)
            try:
                async with anyio.create_task_group() as posts:
                    self._posts = posts
                    result = await self._run(run_id)
                    with anyio.CancelScope(shield=True):
                        await write_report(self.store, self.layout, run_id)
                        await self.notifier.run_finished(
                            run_id,
                            status=result.status,
                            failed=[
                                t for t, r in result.teams.items() if r.status is TeamStatus.FAILED
                            ],
                            reason=result.reason,
                            report=self.layout.report_file(run_id, "html"),
                        )
            finally:
                guard.cancel_scope.cancel()
        return result

    async def _run(self, run_id: str) -> RunResult:
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
                budget=Spending(self.plan),
                notify=self.notify,
                results=self.results,
                lease=lease,
                detached=self.detached,
                on_awaiting=self._post_awaiting,
            )
            self._ctx = ctx
            if self.setup is not None:
                start = await self.setup(ctx)
            else:
                start = StartState()
                await self.store.run_transition(
                    run_id, RunStatus.RUNNING, epoch=lease.epoch, fields=self.options.run_fields()
                )
            ctx.pauses = await active_pauses(self.store, run_id)  # a resume keeps waiting
            if self.on_started is not None:  # the run is running: a live board may follow it
                self.on_started(run_id)
            if self.plan.isolation == "shared":
                ctx.shared_worktree = self.layout.worktree(run_id, SHARED_WORKTREE)
                ctx.shared_branch = shared_branch(run_id)
            executor = ctx.executor = await open_executor(self.options.executor, ctx)
            try:
                await self._drive(ctx, start)
            finally:
                with anyio.CancelScope(shield=True):
                    await executor.aclose()
            self.cancelled = self.cancelled or ctx.cancel_requested.is_set()
            with anyio.CancelScope(shield=True):
                result = await self._finish(ctx)
        return result

    async def _drive(self, ctx: RunContext, start: StartState) -> None:
        """Schedule the teams, then integrate; until done or stopped."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self._stopping:  # a signal came during the setup
                tg.cancel_scope.cancel()
            tg.start_soon(self._watch_cancel, ctx, tg)
            tg.start_soon(self._watch_hard_budget, ctx, tg)
            await self._schedule(ctx, tg, start)
            if self._integration_due():
                await self._integrate(ctx)
            tg.cancel_scope.cancel()

    def _integration_due(self) -> bool:
        return not (self.interrupted or self.cancelled or self.paused_for)

    async def _integrate(self, ctx: RunContext) -> None:
        from orchestrator.run.integration.phase import integrate_run

        partial = True if self.options.integrate_partial else None
        self.integration = await integrate_run(ctx, partial=partial)

    async def _watch_cancel(self, ctx: RunContext, tg: TaskGroup) -> None:
        """Stop the run once ``orchestrate cancel`` marked it cancelled; act on the requests
        to cancel or retry one team (:mod:`orchestrator.run.control`)."""
        while not ctx.cancel_requested.is_set():
            with anyio.move_on_after(CANCEL_POLL):
                await ctx.cancel_requested.wait()
            if ctx.cancel_requested.is_set():
                break
            try:
                await self.control.poll(ctx)
                run = await self.store.get_run(ctx.run_id)
            except StoreError:
                continue  # the store's own retries failed; the next write says why
            if run.status is RunStatus.CANCELLED:
                ctx.cancel_reason = ctx.cancel_reason or run.meta.get("reason") or None
                ctx.cancel_requested.set()
        self.cancelled = True
        self._say(RunStatus.CANCELLED, "`orchestrate cancel`: stopping the agents")
        tg.cancel_scope.cancel()

    async def _watch_hard_budget(self, ctx: RunContext, tg: TaskGroup) -> None:
        """``budget: {hard: true}`` reached: stop the running attempts, pause the run."""
        await ctx.hard_stop.wait()
        self.paused_for = "budget"
        self.stop_reason = ctx.budget_stop
        self._say("stopping", f"stopping the agents: {ctx.budget_stop}")
        tg.cancel_scope.cancel()

    async def _watch_signals(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """SIGINT/SIGTERM: stop the agents. SIGHUP (the terminal closed, ssh dropped): leave
        them running under their supervisors, to be re-attached by ``orchestrate resume``.

        The handlers stay installed until the run is recorded: a further SIGINT/SIGTERM
        while stopping SIGKILLs the agent groups (never an exit that leaves them behind);
        after a SIGHUP further signals are ignored (the agents are left running).
        """
        first: int | None = None
        try:
            with anyio.open_signal_receiver(
                signal.SIGINT, signal.SIGTERM, signal.SIGHUP
            ) as signals:
                task_status.started()
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if first is None:
                        first = signum
                        self.interrupted = True
                        if signum == signal.SIGHUP:
                            self.detached = True
                            if self._ctx is not None:
                                self._ctx.detached = True
                            self._say(RunStatus.INTERRUPTED, f"{name}: leaving the agents running")
                        else:
                            self._say(RunStatus.INTERRUPTED, f"{name}: stopping the agents")
                        self._stopping = True
                        if self._tg is not None:
                            self._tg.cancel_scope.cancel()
                    elif first != signal.SIGHUP and self._ctx is not None:
                        live = self._ctx.live
                        if not live.killing:
                            self._say(
                                RunStatus.INTERRUPTED,
                                f"{name} again: killing {len(live)} agent(s)",
                            )
                        live.kill_all()
        finally:
            if first == signal.SIGHUP:  # a closing terminal may hang up again: stay to the end
                signal.signal(signal.SIGHUP, signal.SIG_IGN)

    async def _schedule(self, ctx: RunContext, tg: TaskGroup, start: StartState) -> None:
        plan = self.plan
        order = graph.topo_order(plan)
        deps = {t.id: t.depends_on for t in plan.teams}
        status = {t.id: start.status.get(t.id, TeamStatus.PENDING) for t in plan.teams}
        startable = {t for t, s in status.items() if s is TeamStatus.PENDING}
        startable |= {t for t, r in start.recoveries.items() if r.attach is None}
        # startable: the teams the scheduler may start (pending, or going on from a resume)
        running: set[str] = set()
        limit = self.options.max_parallel or plan.max_parallel
        providers = {t.id: ctx.provider(t) for t in plan.teams}
        # Per result, only the teams it concerns: ``waiting`` counts each team's upstream
        # teams that have not succeeded (a success is final), ``ready`` holds the teams
        # none of whose upstream teams is waited for and that have not been started.
        index = {t.id: i for i, t in enumerate(plan.teams)}
        below: dict[str, list[str]] = {t.id: [] for t in plan.teams}
        for t in plan.teams:
            for d in t.depends_on:
                below[d].append(t.id)
        succeeded = TeamStatus.SUCCEEDED
        waiting = {t: sum(status[d] is not succeeded for d in ds) for t, ds in deps.items()}
        ready = {t for t, n in waiting.items() if n == 0 and status[t] is not succeeded}
        send, receive = anyio.create_memory_object_stream[TeamResult](max_buffer_size=math.inf)
        self.control.attach(send, status, start.recoveries, startable)
        async with send, receive:
            # Re-attached agents are running already: they do not wait for a slot.
            for team in plan.teams:
                rec = start.recoveries.get(team.id)
                if rec is not None and rec.attach is not None:
                    status[team.id] = TeamStatus.RUNNING
                    running.add(team.id)
                    ready.discard(team.id)
                    tg.start_soon(self._run_team, ctx, team, send.clone(), rec)
            rescan = True  # for blocked teams: at first, then after each result but a success
            while True:
                if rescan:
                    await self._block(ctx, order, deps, status, startable)
                    rescan = False
                if self.stop_reason is None:
                    failed = []
                    if self.options.fail_fast:
                        failed = [t for t, s in status.items() if s is TeamStatus.FAILED]
                    if failed:
                        self.stop_reason = f"--fail-fast: team {failed[0]} failed"
                    else:
                        self.stop_reason = ctx.budget.exhausted(None)
                        if self.stop_reason is not None:
                            self.paused_for = "budget"
                    if self.stop_reason is not None:
                        self._say("stopping", f"no new team starts: {self.stop_reason}")
                held: list[str] = []  # ready, but their provider's usage limit holds them
                if self.stop_reason is None and ready:
                    for tid in sorted(ready, key=index.__getitem__):  # in plan order
                        if len(running - ctx.awaiting) >= limit:  # a waiting gate holds no slot
                            break
                        if tid not in startable:
                            continue
                        if seconds_left(providers[tid], ctx.pauses) is not None:
                            held.append(tid)
                            continue
                        startable.discard(tid)
                        status[tid] = TeamStatus.RUNNING
                        running.add(tid)
                        ready.discard(tid)
                        rec = start.recoveries.get(tid)
                        tg.start_soon(self._run_team, ctx, plan.team(tid), send.clone(), rec)
                if not running and not held:
                    self.control.detach()
                    return
                if running and running <= ctx.awaiting and not held:
                    self.paused_for = "approval"  # only gates are left: a person must decide
                    self.control.detach()
                    return
                result = None
                with anyio.move_on_after(IDLE_POLL):  # a team may start waiting at its gate
                    result = await receive.receive()
                if result is None:
                    continue
                running.discard(result.team)
                if result.status is TeamStatus.PAUSED and result.resume is not None:
                    status[result.team] = TeamStatus.PAUSED
                    startable.add(result.team)  # started again once its provider may
                    start.recoveries[result.team] = result.resume
                    ready.add(result.team)
                    continue
                if result.budget_spent:  # its budget (or the run's) is spent: it waits
                    self.paused_for = "budget"
                    self.budget_reasons[result.team] = result.reason or "budget spent"
                    continue
                status[result.team] = result.status
                self.results[result.team] = result
                rescan = result.status is not TeamStatus.SUCCEEDED
                if result.status is TeamStatus.SUCCEEDED:
                    for tid in below[result.team]:
                        waiting[tid] -= 1
                        if waiting[tid] == 0:
                            ready.add(tid)
                elif result.team in startable and waiting[result.team] == 0:
                    ready.add(result.team)  # retried on request
                if result.status is TeamStatus.FAILED and self._posts is not None:
                    # Posted in the background: a slow webhook never holds the run up.
                    self._posts.start_soon(
                        self.notifier.team_failed,
                        ctx.run_id,
                        result.team,
                        result.reason,
                        self.layout.report_file(ctx.run_id, "html"),
                    )

    async def _block(
        self,
        ctx: RunContext,
        order: list[str],
        deps: dict[str, tuple[str, ...]],
        status: dict[str, TeamStatus],
        startable: set[str],
    ) -> None:
        """Mark ``blocked`` every startable team with an unsuccessful upstream team (cascading)."""
        for tid in order:
            bad = [d for d in deps[tid] if status[d] in TeamStatus.UNSUCCESSFUL]
            if tid not in startable or not bad:
                continue
            reason = f"upstream team {bad[0]} {status[bad[0]]}"
            await self.store.team_transition(
                ctx.run_id, tid, TeamStatus.BLOCKED, epoch=ctx.epoch, attempt=0, reason=reason
            )
            startable.discard(tid)
            status[tid] = TeamStatus.BLOCKED
            self.results[tid] = TeamResult(team=tid, status=TeamStatus.BLOCKED, reason=reason)
            self._say(TeamStatus.BLOCKED, reason, tid)

    def _post_awaiting(self, team: str) -> None:
        """A team waits for approval: post the webhook, in the background."""
        if self._posts is not None and self._ctx is not None:
            self._posts.start_soon(
                self.notifier.awaiting_approval,
                self._ctx.run_id,
                team,
                self.layout.report_file(self._ctx.run_id, "html"),
            )

    async def _run_team(
        self,
        ctx: RunContext,
        team: Team,
        send: anyio.abc.ObjectSendStream[TeamResult],
        recovery: Recovery | None = None,
    ) -> None:
        async with send:
            structlog.contextvars.bind_contextvars(team=team.id)
            with anyio.CancelScope() as scope:  # cancelled alone by `orchestrate cancel-team`
                self.control.scopes[team.id] = scope
                result = await TeamRunner(ctx, team, recovery).run()
            self.control.scopes.pop(team.id, None)
            if scope.cancelled_caught:
                cancelled = TeamStatus.CANCELLED
                result = TeamResult(team=team.id, status=cancelled, reason="cancelled on request")
            await send.send(result)

    async def _finish(self, ctx: RunContext) -> RunResult:
        run_id = ctx.run_id
        teams = await self.store.get_teams(run_id)
        results: dict[str, TeamResult] = {}
        for team in self.plan.teams:
            res = self.results.get(team.id)
            state = teams.get(team.id)
            status = state.status if state else (res.status if res else TeamStatus.PENDING)
            if res is None:
                res = TeamResult(team=team.id, status=status)
                if state is not None:
                    res.attempts = state.attempt
                    res.branch = state.branch
                    res.reason = state.reason
                if status is TeamStatus.PENDING and self.stop_reason:
                    res.reason = f"not started: {self.stop_reason}"
            res.status = status
            results[team.id] = res
        integration = self.integration
        final, reason = run_verdict(
            RunFacts(
                teams={t: r.status for t, r in results.items()},
                cancelled=self.cancelled,
                cancel_reason=ctx.cancel_reason,
                interrupted=self.interrupted,
                detached=self.detached,
                stop_reason=self.stop_reason,
                paused_for=self.paused_for,
                budget_reasons=tuple(self.budget_reasons.values()),
                run_id=run_id,
                integration=integration.status if integration is not None else None,
                integration_reason=integration.reason if integration is not None else None,
            )
        )
        fields = {"finished": repr(time.time())}
        if reason is None:
            fields["reason"] = ""  # not the phase's ("integrating db, api") once it succeeded
        await self.store.run_transition(
            run_id, final, epoch=ctx.epoch, reason=reason, fields=fields
        )
        self._say(final, reason or "every team succeeded")
        return RunResult(
            run_id=run_id,
            status=final,
            teams=results,
            reason=reason,
            base_ref=self.info.base_ref,
            base_commit=self.info.base_commit,
            integration=integration,
            paused_for=self.paused_for if final is RunStatus.PAUSED else None,
            awaiting=[t for t, r in results.items() if r.status is TeamStatus.AWAITING_APPROVAL],
        )


async def write_report(store: Store, layout: StateLayout, run_id: str) -> None:
    """Write ``runs/<run>/report.{md,json,html}`` at the end of every run and resume.

    A report that cannot be written never fails the run: it is logged, and
    ``orchestrate report RUN`` can write it later.
    """
    from orchestrator.views.report import write_reports

    try:
        with anyio.move_on_after(30):
            await write_reports(store, layout, run_id)
    except (OrchestrateError, OSError, ValueError) as exc:
        log.warning("could not write the report", run=run_id, error=str(exc))


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
    on_started: Callable[[str], None] | None = None,
) -> RunResult:
    """Create a run of ``loaded`` and drive it to its end.

    ``on_created`` is called once the run is recorded, ``on_started`` (with
    its id) once it holds its lease and is ``running``.
    """
    check_executor((options or EngineOptions()).executor)  # before anything is recorded
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
        on_started=on_started,
    )
    try:
        return await engine.run()
    except BaseExceptionGroup as group:
        error = first_error(group)
        await record_crash(store, info.run_id, error)
        raise error from group
    except Exception as exc:
        await record_crash(store, info.run_id, exc)
        raise


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a task group's exception group: an OrchestrateError first,
    else the first that is not a cancellation (callers ``raise first_error(g) from g``)."""
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
