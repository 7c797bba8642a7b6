"""One team's life in a run: its worktree, its attempts, its verdict.

:class:`TeamRunner` is what the scheduler (:mod:`orchestrator.engine`) starts
for a team whose upstream teams succeeded. It

1. prepares the team's worktree (``worktree`` isolation: a worktree on
   ``orchestrate/<run>/<team>`` from the base commit with the upstream branches
   merged in dependency order; a conflict fails the team naming the files);
2. runs attempts: a fresh agent id, the rendered prompt, the agent as a
   supervised process (:mod:`orchestrator.agentproc`) with its output followed
   into the team's Redis log stream;
3. judges each attempt: the agent's verdict, the deliverables, the checks
   (:mod:`orchestrator.verify`); done means committed on the team branch,
   deliverable hashes recorded, ``succeeded``; otherwise ``retrying`` with the
   feedback (tenacity's exponential backoff with jitter) until ``retries`` are
   spent, then ``failed`` with the reason.

Every state change is written through the store's atomic transitions before
the step it announces is taken, and everything a later ``resume`` needs to
re-attach to an attempt is in the store before the agent starts: agent id,
log, status file, prompt (the ``running`` transition), then the supervisor's
pid and start time, and the log offset consumed so far as batches are stored.
A :class:`Recovery` (built by :mod:`orchestrator.resume`) makes a runner
re-attach to a running attempt, judge one that ended, or start the next one.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import structlog

from orchestrator import graph
from orchestrator.agentproc import AgentProcess, Outcome
from orchestrator.agentrun import AgentJob, AgentRun, LiveAgents, prepare
from orchestrator.agents import adapter_for
from orchestrator.agents.base import Verdict, exit_reason
from orchestrator.envs import work_env
from orchestrator.errors import OrchestrateError, StaleEpochError
from orchestrator.gitops import Git, team_branch
from orchestrator.paths import StateLayout
from orchestrator.plan import Plan, Team
from orchestrator.planload import LoadedPlan
from orchestrator.prompts import (
    Feedback,
    PromptInput,
    UpstreamResult,
    load_role,
    render_feedback,
    render_prompt,
)
from orchestrator.redact import Redactor
from orchestrator.store import Store, Usage, new_agent_id
from orchestrator.verify import CheckResult, find_deliverables, run_checks

if TYPE_CHECKING:
    from orchestrator.engine import Budget, EngineOptions
    from orchestrator.store import Lease

log = structlog.get_logger("orchestrate.team")

FINAL_MESSAGE_CHARS = 4000
"""At most this much of a team's final message is kept (downstream prompts quote it)."""

CRASH_ENV = "ORCHESTRATE_TEST_CRASH_AT"


def crash_point(name: str, team: str) -> None:
    """Test hook (fault injection only): ``ORCHESTRATE_TEST_CRASH_AT=<name>[:<team>]``
    makes this orchestrator kill itself with SIGKILL at the named point.

    Points: ``before-commit`` (an agent's attempt judged good, its commit not made).
    Agents never see the variable (``envs`` drops every ``ORCHESTRATE_*``).
    """
    want = os.environ.get(CRASH_ENV)
    if want and want in (name, f"{name}:{team}"):
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class AttemptRecord:
    """What the store holds about a started attempt: enough to re-attach to it."""

    attempt: int
    agent_id: str
    pid: int
    create_time: float | None
    log: Path
    status: Path
    offset: int
    started: float | None = None
    session_id: str | None = None
    finished: bool = False
    """Its end was already recorded (usage counted): a resume does not count it again."""


@dataclass(frozen=True)
class Recovery:
    """How a resumed team goes on (see :mod:`orchestrator.resume`).

    With ``attach``: follow that attempt (running, or ended and not yet judged)
    to its end, then judge it as usual. Without: start attempt ``attempt``
    (with ``feedback`` when there was one before).
    """

    attempt: int
    max_attempts: int
    attach: AttemptRecord | None = None
    feedback: Feedback | None = None
    session_id: str | None = None


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
    status: str
    attempts: int = 0
    branch: str | None = None
    reason: str | None = None
    files: list[str] = field(default_factory=list)
    final_message: str | None = None


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
    budget: Budget
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
    _topo_index: dict[str, int] | None = None

    def upstream(self, team_id: str) -> list[str]:
        """Every team ``team_id`` depends on, directly or not, in dependency order
        (:func:`graph.upstream`, with the plan's order computed once per run)."""
        if self._topo_index is None:
            self._topo_index = {t: i for i, t in enumerate(graph.topo_order(self.plan))}
        return graph.upstream(self.plan, team_id, order=self._topo_index)

    @property
    def plan(self) -> Plan:
        return self.loaded.plan

    @property
    def lost(self) -> bool:
        """This orchestrator no longer owns the run: leave its agents to the new owner."""
        return self.stale or (self.lease is not None and self.lease.lost.is_set())

    @property
    def leaves_agents(self) -> bool:
        """Stopping leaves the agents running and their teams as they are: another
        orchestrator owns the run, or this one detached from it (SIGHUP)."""
        return self.detached or self.lost


@dataclass(frozen=True)
class _Judgement:
    ok: bool
    reason: str
    feedback: Feedback
    found: dict[str, str | None]
    files: list[str]
    fatal: bool = False
    retryable: bool = False
    retry_after: float | None = None


@dataclass(frozen=True)
class Judged:
    """The agent's own verdict on an attempt (before deliverables and checks)."""

    success: bool
    reason: str | None = None
    error: str | None = None
    usage: Usage | None = None
    session_id: str | None = None
    final_message: str | None = None
    retryable: bool = False
    fatal: bool = False
    retry_after: float | None = None

    @classmethod
    def of(cls, verdict: Verdict, outcome: Outcome, tail: Sequence[str]) -> Judged:
        final = verdict.result
        if final is None:  # a plain-text agent: the end of what it printed
            final = "\n".join(line for line in tail[-10:] if line.strip()) or None
        usage = Usage(
            input_tokens=verdict.input_tokens,
            output_tokens=verdict.output_tokens,
            cost_usd=verdict.cost_usd or 0.0,
        )
        return cls(
            success=verdict.success,
            reason=verdict.reason,
            # What the agent itself said went wrong (the exit code is shown on its own).
            error=verdict.reason if verdict.reason != exit_reason(outcome) else None,
            usage=usage,
            session_id=verdict.session_id,
            final_message=final,
            retryable=verdict.retryable,
            fatal=verdict.fatal,
            retry_after=verdict.retry_after,
        )


def _summarize(problems: Sequence[str], checks: Sequence[CheckResult], judged: Judged) -> str:
    parts: list[str] = []
    if not judged.success and judged.reason:
        parts.append(judged.reason)
    if problems:
        parts.append("missing " + ", ".join(p.split(":", 1)[0] for p in problems))
    parts += [c.describe() for c in checks if not c.passed]
    return "; ".join(parts) or "the attempt did not pass"


class TeamRunner:
    """Runs one team to its end (succeeded, failed) or until cancelled."""

    def __init__(self, ctx: RunContext, team: Team, recovery: Recovery | None = None) -> None:
        self.ctx = ctx
        self.team = team
        self.plan = ctx.plan
        self.recovery = recovery
        self.max_attempts = recovery.max_attempts if recovery else self.plan.retries(team) + 1
        if ctx.shared_worktree is not None:
            self.worktree = ctx.shared_worktree
            self.branch = ctx.shared_branch or ""
        else:
            self.worktree = ctx.layout.worktree(ctx.run_id, team.id)
            self.branch = team_branch(ctx.run_id, team.id)
        self.attempt = 0
        self.status = "pending"
        self.agent_id = ""
        self.session_id: str | None = recovery.session_id if recovery else None
        self.final_message: str | None = None
        self._to_merge: list[str] | None = None
        """Upstream branches still to merge; None: ask git (a reused worktree)."""
        self.log = log.bind(run=ctx.run_id, team=team.id)

    # -- helpers ------------------------------------------------------------------------

    def _notify(self, status: str, detail: str = "") -> None:
        self.ctx.notify(Notice(time.time(), self.team.id, status, detail))

    async def _transition(
        self,
        to: str,
        *,
        fields: Mapping[str, str] | None = None,
        reason: str | None = None,
        deliverables: Mapping[str, str | None] | None = None,
    ) -> None:
        ctx = self.ctx
        await ctx.store.team_transition(
            ctx.run_id,
            self.team.id,
            to,
            epoch=ctx.epoch,
            attempt=self.attempt,
            fields=fields or {},
            reason=reason,
            deliverables=deliverables,
        )
        self.status = to

    def _result(self, status: str, reason: str | None = None, **kw: object) -> TeamResult:
        result = TeamResult(
            team=self.team.id,
            status=status,
            attempts=self.attempt,
            branch=self.branch,
            reason=reason,
        )
        for key, value in kw.items():
            setattr(result, key, value)
        return result

    async def _fail(self, reason: str) -> TeamResult:
        await self._transition("failed", fields={"finished": repr(time.time())}, reason=reason)
        self._notify("failed", reason)
        return self._result("failed", reason)

    # -- the team's life ----------------------------------------------------------------

    async def run(self) -> TeamResult:
        """Prepare, attempt, judge; returns the team's result. Cancellation marks it cancelled."""
        try:
            return await self._run()
        except StaleEpochError:
            self.ctx.stale = True  # the agents stay: the new owner of the run follows them
            raise
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._cancelled()
            raise

    async def _cancelled(self) -> None:
        if self.status in ("succeeded", "failed", "cancelled") or self.ctx.leaves_agents:
            return
        ctx = self.ctx
        if ctx.cancel_requested.is_set():  # `orchestrate cancel`, not Ctrl-C
            reason = ctx.cancel_reason or "the run was cancelled"
        else:
            reason = "the run was interrupted"
        try:
            await self._transition("cancelled", reason=reason)
        except OrchestrateError as exc:  # the run is stopping anyway; say it in the debug log
            self.log.warning("could not record the cancellation", error=str(exc))

    async def _run(self) -> TeamResult:
        try:
            await self._prepare()
        except OrchestrateError as exc:
            return await self._fail(str(exc))
        conflict = await self._merge_upstream()
        if conflict is not None:
            return await self._fail(conflict)
        rec = self.recovery
        feedback: Feedback | None = rec.feedback if rec else None
        self.attempt = rec.attempt if rec else 1
        attach = rec.attach if rec else None
        while True:
            spent = self.ctx.budget.exhausted(self.team) if attach is None else None
            if spent is not None:
                return await self._fail(spent)
            try:
                if attach is not None:
                    judgement = await self._reattach(attach)
                    attach = None
                else:
                    judgement = await self._attempt(feedback)
            except StaleEpochError:
                raise
            except OrchestrateError as exc:
                return await self._fail(str(exc))
            if judgement.ok:
                return await self._succeed(judgement)
            feedback = judgement.feedback
            if judgement.fatal:
                return await self._fail(f"{judgement.reason} (not retried)")
            if self.attempt >= self.max_attempts:
                return await self._fail(judgement.reason)
            self.attempt += 1
            await self._transition("retrying", reason=judgement.reason)
            self._notify("retrying", judgement.reason)
            pause = self.ctx.options.backoff(self.attempt - 1)
            if judgement.retry_after is not None:
                pause = max(pause, judgement.retry_after)
            elif judgement.retryable:
                pause *= 4  # a rate limit or an overload: give the service time
            await anyio.sleep(pause)

    def _direct_upstream_branches(self) -> list[str]:
        """The branches of the teams this one names in ``depends_on``, in plan order.

        Each of them already holds its own upstream teams' work (merged when that
        team started), so merging these brings in every transitive upstream.
        """
        direct = set(self.team.depends_on)
        return [team_branch(self.ctx.run_id, t.id) for t in self.plan.teams if t.id in direct]

    async def _prepare(self) -> None:
        self._to_merge = []
        if self.ctx.shared_worktree is not None:
            return
        upstream = self._direct_upstream_branches()
        # A fresh team starts on its first upstream's tip: with one upstream there is
        # nothing left to merge; the base commit is in every upstream branch already.
        start = upstream[0] if upstream else self.ctx.base_commit
        git = self.ctx.git
        created = await git.add_worktree(self.worktree, self.branch, start)
        if created:
            self._to_merge = upstream[1:]
            return
        await git.abort_merge(self.worktree)  # one a crashed orchestrator left
        self._to_merge = None  # a reused worktree: find out what is merged already

    async def _merge_upstream(self) -> str | None:
        """Merge the direct upstream teams' branches (plan order); a conflict's description.

        Branches already merged (a resumed team, the branch it started on) are skipped.
        """
        if self.ctx.shared_worktree is not None:
            return None
        git = self.ctx.git
        branches = self._to_merge
        if branches is None:
            branches = await git.not_merged(self.worktree, self._direct_upstream_branches())
        if not branches:
            return None
        try:
            merged = await self.ctx.git.merge(
                self.worktree,
                branches,
                message=f"orchestrate: merge {{branch}} into {self.team.id}",
            )
        except OrchestrateError as exc:
            return str(exc)
        if merged.ok:
            return None
        return f"merging the upstream branch {merged.conflict_branch} conflicts in " + ", ".join(
            merged.conflicts
        )

    def _upstream(self) -> list[UpstreamResult]:
        out = []
        for tid in self.ctx.upstream(self.team.id):
            res = self.ctx.results.get(tid)
            up = self.plan.team(tid)
            out.append(
                UpstreamResult(
                    team=tid,
                    title=up.title,
                    files=res.files if res else [],
                    final_message=res.final_message if res else None,
                    branch=res.branch if res else None,
                )
            )
        return out

    def _work_env(self) -> dict[str, str]:
        """The agent's environment without its ``ORCHESTRATE_*`` layer: what the checks get."""
        config = self.plan.agent_config(self.plan.agent_name(self.team))
        return work_env(
            allow=self.plan.env_allow, layers=[self.plan.env, config.env, self.team.env]
        )

    async def _attempt(self, feedback: Feedback | None) -> _Judgement:
        ctx, team = self.ctx, self.team
        agent_id = new_agent_id()
        self.agent_id = agent_id
        bound = self.log.bind(agent=agent_id, attempt=self.attempt)
        structlog.contextvars.bind_contextvars(team=team.id, agent=agent_id)
        prompt_file = ctx.layout.prompt_file(ctx.run_id, team.id, self.attempt)
        log_file = ctx.layout.log_file(ctx.run_id, team.id, self.attempt)
        status_file = ctx.layout.status_file(ctx.run_id, team.id, self.attempt)
        config = self.plan.agent_config(self.plan.agent_name(team))
        resume = self.session_id if (feedback is not None and config.resume_session) else None
        prompt_input = PromptInput(
            run_id=ctx.run_id,
            plan=self.plan,
            team=team,
            attempt=self.attempt,
            max_attempts=self.max_attempts,
            workdir=self.worktree,
            role=load_role(team.role, ctx.loaded.repo_root),
            upstream=self._upstream(),
            feedback=feedback,
        )
        if resume is not None:  # the agent remembers its task: send only what went wrong
            prompt = render_feedback(prompt_input)
        else:
            prompt = render_prompt(prompt_input, plan_file=ctx.loaded.path)
        # A few KB on a local disk: cheaper inline than two hops to a worker thread.
        prepared = prepare(
            AgentJob(
                config=config,
                team_id=team.id,
                attempt=self.attempt,
                agent_id=agent_id,
                workdir=self.worktree,
                prompt=prompt,
                prompt_file=prompt_file,
                log=log_file,
                status=status_file,
                env=self._work_env(),
                orchestrate={
                    "ORCHESTRATE_RUN": ctx.run_id,
                    "ORCHESTRATE_TEAM": team.id,
                    "ORCHESTRATE_AGENT_ID": agent_id,
                    "ORCHESTRATE_ATTEMPT": str(self.attempt),
                    "ORCHESTRATE_PROMPT_FILE": str(prompt_file),
                },
                secrets=ctx.store.secrets,
                run_id=ctx.run_id,
                model=team.model,
                resume_session_id=resume,
                max_budget_usd=team.budget.usd if team.budget else None,
            )
        )
        now = repr(time.time())
        await self._transition(
            "running",
            fields={
                "agent_id": agent_id,
                "branch": self.branch,
                "worktree": str(self.worktree),
                "started": now,
                # The team's own start (``started`` is its current attempt's): set once.
                **({"first_started": now} if self.attempt == 1 else {}),
                "log": str(log_file),
                "status_file": str(status_file),
                "prompt_file": str(prompt_file),
                "offset": "0",
                "pid": "",
                "pid_created": "",
                "session_id": resume or "",
                # What the prompt says ("attempt 2 of at most 4"): the board shows the same.
                "max_attempts": str(self.max_attempts),
            },
        )
        self._notify("running", f"attempt {self.attempt}/{self.max_attempts}  agent {agent_id}")
        bound.debug("starting agent", argv=prepared.argv)
        proc = await AgentProcess.start(prepared.launch)
        return await self._follow(
            proc, AgentRun(prepared.adapter), self.plan.timeout(team), fresh=True
        )

    async def _reattach(self, rec: AttemptRecord) -> _Judgement:
        """Follow an attempt another orchestrator started, from the log offset it reached."""
        config = self.plan.agent_config(self.plan.agent_name(self.team))
        adapter = adapter_for(config.kind or "")
        self.agent_id = rec.agent_id
        if rec.session_id:
            self.session_id = rec.session_id
        structlog.contextvars.bind_contextvars(team=self.team.id, agent=rec.agent_id)
        run = AgentRun(adapter)
        # What the agent said before the offset is in Redis already; the verdict needs it too.
        run.feed(await anyio.to_thread.run_sync(_read_head, rec.log, rec.offset))
        proc = await AgentProcess.attach(
            rec.pid, rec.log, rec.status, rec.offset, create_time=rec.create_time
        )
        self.status = "running"
        state = "running" if proc.running else "ended"
        self._notify("attached", f"attempt {self.attempt}  agent {rec.agent_id}  ({state})")
        elapsed = time.time() - rec.started if rec.started else 0.0
        timeout = max(1.0, self.plan.timeout(self.team) - elapsed)
        return await self._follow(proc, run, timeout, fresh=False, count_usage=not rec.finished)

    async def _follow(
        self,
        proc: AgentProcess,
        run: AgentRun,
        timeout: float,  # noqa: ASYNC109 (the agent's limit)
        *,
        fresh: bool,
        count_usage: bool = True,
    ) -> _Judgement:
        """Follow ``proc`` to its end (its output to Redis, its offset recorded), then judge."""
        ctx, team, attempt = self.ctx, self.team, self.attempt
        store, run_id = ctx.store, ctx.run_id

        async def on_lines(shown: list[str], session: str | None) -> None:
            await store.append_log(run_id, team.id, attempt, shown)
            fields = {"offset": str(proc.offset)}
            if session:
                fields["session_id"] = session
            await store.update_attempt(run_id, team.id, attempt, fields, epoch=ctx.epoch)

        with ctx.live.track(proc):
            async with proc:
                try:
                    if fresh:
                        created = "" if proc.create_time is None else repr(proc.create_time)
                        await store.update_attempt(
                            run_id,
                            team.id,
                            attempt,
                            {"pid": str(proc.pid), "pid_created": created},
                            epoch=ctx.epoch,
                        )
                    outcome = await run.follow(
                        proc,
                        timeout=timeout,
                        stall_timeout=self.plan.stall_timeout(team),
                        on_lines=on_lines,
                        grace=ctx.options.kill_grace,
                    )
                except BaseException:
                    if ctx.leaves_agents:
                        proc.detach()  # the orchestrator that takes over follows it
                    raise
        if not outcome.ok:  # `orchestrate cancel` kills agents: a clean exit was not killed
            await self._stop_if_cancelled()
        tail = list(run.tail)
        judged = Judged.of(run.verdict(outcome), outcome, tail)
        self.final_message = judged.final_message
        if judged.session_id:
            self.session_id = judged.session_id
        if count_usage:
            await self._record_usage(judged.usage)
        # The attempt's end and the move to verifying: one step (one round trip).
        await self._transition(
            "verifying",
            fields={
                "exit_code": "" if outcome.exit_code is None else str(outcome.exit_code),
                "finished": repr(time.time()),
                "reason": judged.reason or "",
                **({"session_id": judged.session_id} if judged.session_id else {}),
            },
        )
        return await self._judge(outcome, judged, tail)

    async def _stop_if_cancelled(self) -> None:
        """After an agent ended: if the run was cancelled, wait for the engine to stop us.

        ``orchestrate cancel`` kills the agents before the engine notices: the
        killed attempt must not be judged (nor retried).
        """
        ctx = self.ctx
        if not ctx.cancel_requested.is_set():
            run = await ctx.store.get_run(ctx.run_id)
            if run.status != "cancelled":
                return
            ctx.cancel_reason = ctx.cancel_reason or run.meta.get("reason") or None
            ctx.cancel_requested.set()
        await anyio.sleep_forever()  # the engine's watcher cancels the run's task group

    async def _record_usage(self, usage: Usage | None) -> None:
        if usage is None or (usage.tokens == 0 and usage.cost_usd == 0):
            return
        ctx = self.ctx
        ctx.budget.add(self.team.id, usage)
        await ctx.store.add_usage(
            ctx.run_id, self.team.id, usage, epoch=ctx.epoch, attempt=self.attempt
        )

    async def _judge(self, outcome: Outcome, judged: Judged, tail: list[str]) -> _Judgement:
        report = find_deliverables(self.worktree, self.team.deliverables)
        checks: list[CheckResult] = []
        if judged.success and self.team.checks:
            checks = await run_checks(
                self.worktree,
                self.team.checks,
                time_limit=self.plan.defaults.check_timeout,
                env=self._work_env(),
            )
        failed = [c for c in checks if not c.passed]
        ok = judged.success and report.ok and not failed
        reason = "" if ok else _summarize(report.problems, failed, judged)
        await self._record_judgement(
            checks if judged.success and self.team.checks else None, reason
        )
        feedback = Feedback(
            attempt=self.attempt,
            reason=reason,
            missing=report.problems,
            failed_checks=failed,
            timed_out=outcome.timed_out,
            stalled=outcome.stalled,
            timeout=outcome.limit,
            exit_code=outcome.exit_code,
            agent_error=judged.error,
            log_tail="\n".join(tail[-15:]) if not judged.success else None,
        )
        files = [p for p, digest in report.found.items() if digest is not None]
        return _Judgement(
            ok,
            reason,
            feedback,
            report.found,
            files,
            fatal=judged.fatal,
            retryable=judged.retryable,
            retry_after=judged.retry_after,
        )

    async def _record_judgement(self, checks: Sequence[CheckResult] | None, reason: str) -> None:
        """On the attempt: each check's result (field ``checks``, JSON, when they ran) and
        why it did not pass (``reason``: the missing files, the failing checks)."""
        fields = {"checks": checks_json(checks)} if checks is not None else {}
        if reason:
            fields["reason"] = reason
        if fields:
            ctx = self.ctx
            await ctx.store.update_attempt(
                ctx.run_id, self.team.id, self.attempt, fields, epoch=ctx.epoch
            )

    async def _succeed(self, judgement: _Judgement) -> TeamResult:
        ctx = self.ctx
        message = (
            f"orchestrate: team {self.team.id} ({self.team.title})\n\n"
            f"Run: {ctx.run_id}\nAgent: {self.agent_id}\nAttempt: {self.attempt}\n"
        )
        crash_point("before-commit", self.team.id)
        final = self._kept_final_message()
        if final:  # before `succeeded`: a resume restores it for the downstream prompts
            await ctx.store.update_attempt(
                ctx.run_id, self.team.id, self.attempt, {"final_message": final}, epoch=ctx.epoch
            )
        if ctx.shared_worktree is not None:
            async with ctx.commit_lock:
                commit = await ctx.git.commit_all(self.worktree, message)
        else:
            commit = await ctx.git.commit_all(self.worktree, message)
            if commit is None:  # committed before a crash (a resume judges it again)
                commit = await ctx.git.head(self.worktree)
        await self._transition(
            "succeeded",
            fields={"finished": repr(time.time()), "commit": commit or ""},
            deliverables=judgement.found,
        )
        self._notify("succeeded", f"attempt {self.attempt}  branch {self.branch}")
        return self._result("succeeded", files=judgement.files, final_message=final)

    def _kept_final_message(self) -> str | None:
        """The final message as stored and quoted downstream: redacted, at most
        :data:`FINAL_MESSAGE_CHARS` (its beginning)."""
        text = (self.final_message or "").strip()
        if not text:
            return None
        text = Redactor.from_env(extra=self.ctx.store.secrets).redact(text)
        if len(text) > FINAL_MESSAGE_CHARS:
            text = text[: FINAL_MESSAGE_CHARS - 1].rstrip() + "…"
        return text


def checks_json(checks: Sequence[CheckResult]) -> str:
    """``[{"command", "passed", "exit_code", "duration", "timed_out"}]`` (an attempt's
    ``checks`` field; the report reads it)."""
    return json.dumps(
        [
            {
                "command": c.command,
                "passed": c.passed,
                "exit_code": c.exit_code,
                "duration": round(c.duration, 3),
                "timed_out": c.timed_out,
            }
            for c in checks
        ]
    )


def _read_head(log: Path, offset: int) -> list[str]:
    """The lines of ``log`` before byte ``offset`` (what an earlier orchestrator consumed)."""
    try:
        with log.open("rb") as fh:
            data = fh.read(offset)
    except OSError:
        return []
    return [line.removesuffix("\r") for line in data.decode("utf-8", "replace").split("\n") if line]
