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
the step it announces is taken.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import structlog

from orchestrator import graph
from orchestrator.agentproc import AgentProcess, Launch, Outcome
from orchestrator.agents import adapter_for
from orchestrator.agents.base import AgentContext, AgentEvent, Verdict, exit_reason
from orchestrator.envs import agent_env
from orchestrator.errors import OrchestrateError
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
from orchestrator.store import Store, Usage, new_agent_id
from orchestrator.verify import CheckResult, find_deliverables, run_checks

if TYPE_CHECKING:
    from orchestrator.engine import Budget, EngineOptions

log = structlog.get_logger("orchestrate.team")

LOG_TAIL_LINES = 40
"""Lines of the agent's output kept for the retry prompt and the final message."""


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

    @property
    def plan(self) -> Plan:
        return self.loaded.plan


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


_KEPT_EVENTS = ("session", "usage", "result", "error")
"""Events kept in memory for the verdict (messages and text only go to the log)."""


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

    def __init__(self, ctx: RunContext, team: Team) -> None:
        self.ctx = ctx
        self.team = team
        self.plan = ctx.plan
        self.max_attempts = self.plan.retries(team) + 1
        if ctx.shared_worktree is not None:
            self.worktree = ctx.shared_worktree
            self.branch = ctx.shared_branch or ""
        else:
            self.worktree = ctx.layout.worktree(ctx.run_id, team.id)
            self.branch = team_branch(ctx.run_id, team.id)
        self.attempt = 0
        self.status = "pending"
        self.agent_id = ""
        self.session_id: str | None = None
        self.final_message: str | None = None
        self.log = log.bind(run=ctx.run_id, team=team.id)

    # -- helpers ------------------------------------------------------------------------

    def _notify(self, status: str, detail: str = "") -> None:
        self.ctx.notify(Notice(time.time(), self.team.id, status, detail))

    async def _transition(
        self, to: str, *, fields: Mapping[str, str] | None = None, reason: str | None = None
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
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._cancelled()
            raise

    async def _cancelled(self) -> None:
        if self.status in ("succeeded", "failed", "cancelled"):
            return
        try:
            await self._transition("cancelled", reason="the run was interrupted")
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
        feedback: Feedback | None = None
        self.attempt = 1
        while True:
            spent = self.ctx.budget.exhausted(self.team)
            if spent is not None:
                return await self._fail(spent)
            try:
                judgement = await self._attempt(feedback)
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

    async def _prepare(self) -> None:
        if self.ctx.shared_worktree is not None:
            return
        await self.ctx.git.add_worktree(self.worktree, self.branch, self.ctx.base_commit)

    async def _merge_upstream(self) -> str | None:
        """Merge the upstream teams' branches (dependency order); a conflict's description."""
        if self.ctx.shared_worktree is not None:
            return None
        branches = [
            team_branch(self.ctx.run_id, t) for t in graph.upstream(self.plan, self.team.id)
        ]
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
        for tid in graph.upstream(self.plan, self.team.id):
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

    def _env(
        self, agent_id: str, prompt_file: Path, agent_layer: Mapping[str, str]
    ) -> dict[str, str]:
        return agent_env(
            allow=self.plan.env_allow,
            layers=[self.plan.env, agent_layer, self.team.env],
            orchestrate={
                "ORCHESTRATE_RUN": self.ctx.run_id,
                "ORCHESTRATE_TEAM": self.team.id,
                "ORCHESTRATE_AGENT_ID": agent_id,
                "ORCHESTRATE_ATTEMPT": str(self.attempt),
                "ORCHESTRATE_PROMPT_FILE": str(prompt_file),
            },
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
        adapter = adapter_for(config.kind or "")
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
        await anyio.Path(prompt_file.parent).mkdir(mode=0o700, parents=True, exist_ok=True)
        await anyio.Path(prompt_file).write_text(prompt)
        env = self._env(agent_id, prompt_file, config.env)
        agent_ctx = AgentContext(
            config=config,
            kind=config.kind or "",
            team_id=team.id,
            attempt=self.attempt,
            agent_id=agent_id,
            workdir=self.worktree,
            prompt_file=prompt_file,
            prompt_text=prompt,
            model=team.model or config.model,
            resume_session_id=resume,
            env=env,
            run_id=ctx.run_id,
            max_budget_usd=team.budget.usd if team.budget else None,
        )
        argv = adapter.argv(agent_ctx)
        env.update(adapter.env(agent_ctx))
        await self._transition(
            "running",
            fields={
                "agent_id": agent_id,
                "branch": self.branch,
                "worktree": str(self.worktree),
                "started": repr(time.time()),
                "log": str(log_file),
                "prompt_file": str(prompt_file),
            },
        )
        self._notify("running", f"attempt {self.attempt}/{self.max_attempts}  agent {agent_id}")
        bound.debug("starting agent", argv=argv)
        tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        events: list[AgentEvent] = []

        async def on_lines(lines: list[str]) -> None:
            shown: list[str] = []
            for line in lines:
                for event in adapter.parse(line):
                    shown.append(event.display())
                    if event.type in _KEPT_EVENTS:
                        events.append(event)
            tail.extend(shown)
            await ctx.store.append_log(ctx.run_id, team.id, self.attempt, shown)

        launch = Launch(argv=argv, cwd=self.worktree, env=env, log=log_file, status=status_file)
        async with await AgentProcess.start(launch) as proc:
            await ctx.store.update_attempt(
                ctx.run_id, team.id, self.attempt, {"pid": str(proc.pid)}, epoch=ctx.epoch
            )
            outcome = await proc.run(
                timeout=self.plan.timeout(team),
                stall_timeout=self.plan.stall_timeout(team),
                on_lines=on_lines,
                grace=ctx.options.kill_grace,
            )
        judged = Judged.of(adapter.judge(outcome, events), outcome, list(tail))
        self.final_message = judged.final_message
        if judged.session_id:
            self.session_id = judged.session_id
        await self._record_usage(judged.usage)
        await ctx.store.update_attempt(
            ctx.run_id,
            team.id,
            self.attempt,
            {
                "exit_code": "" if outcome.exit_code is None else str(outcome.exit_code),
                "finished": repr(time.time()),
                "reason": judged.reason or "",
                **({"session_id": judged.session_id} if judged.session_id else {}),
            },
            epoch=ctx.epoch,
        )
        await self._transition("verifying")
        return await self._judge(outcome, judged, list(tail))

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
                self.worktree, self.team.checks, time_limit=self.plan.defaults.check_timeout
            )
        failed = [c for c in checks if not c.passed]
        ok = judged.success and report.ok and not failed
        reason = "" if ok else _summarize(report.problems, failed, judged)
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

    async def _succeed(self, judgement: _Judgement) -> TeamResult:
        ctx = self.ctx
        message = (
            f"orchestrate: team {self.team.id} ({self.team.title})\n\n"
            f"Run: {ctx.run_id}\nAgent: {self.agent_id}\nAttempt: {self.attempt}\n"
        )
        if ctx.shared_worktree is not None:
            async with ctx.commit_lock:
                commit = await ctx.git.commit_all(self.worktree, message)
        else:
            commit = await ctx.git.commit_all(self.worktree, message)
        await ctx.store.set_deliverables(ctx.run_id, self.team.id, judgement.found, epoch=ctx.epoch)
        await self._transition(
            "succeeded",
            fields={"finished": repr(time.time()), "commit": commit or ""},
        )
        self._notify("succeeded", f"attempt {self.attempt}  branch {self.branch}")
        return self._result("succeeded", files=judgement.files, final_message=self.final_message)
