"""One attempt of one team, done on this machine: worktree, prompt, agent, verification, commit.

What a local executor (:mod:`orchestrator.run.local_executor`) runs for each
:class:`~orchestrator.run.executor.AttemptRequest`:

1. with ``prepare``: the team's worktree (``worktree`` isolation: a worktree
   on ``orchestrate/<run>/<team>`` from its first upstream branch or the base,
   the other direct upstream branches merged in plan order; a conflict is a
   ``setup_error`` naming the files);
2. the agent: a fresh agent id, the rendered prompt, the agent started once
   (:mod:`orchestrator.agents.runner`) after the scheduler wrote ``running``
   (:meth:`AttemptHooks.starting`), or, with ``attach``, an agent started
   before followed from its recorded log offset; its output parsed into the
   team's Redis log stream, the supervisor's pid, its start time and the log
   offset recorded on the attempt as they come;
3. the verification once the scheduler has recorded the end
   (:meth:`AttemptHooks.ended`): the agent's verdict, the deliverables, the
   checks (in the agent's environment without ``ORCHESTRATE_*``), recorded on
   the attempt (``checks``, ``reason``);
4. when it passed: the final message recorded, the worktree committed on the
   team branch.

It writes attempt records and log lines only, never a team transition.

Everything it uses is in its :class:`RunSite` and the request: an executor on
another machine builds its own site (its workspace's state layout and clone,
its own store connection, the plan from the run's meta via
:func:`orchestrator.state.runs.plan_of_run`) and runs the same :class:`Attempt`.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import structlog

from orchestrator.agents import adapter_for
from orchestrator.agents.base import Verdict, exit_reason
from orchestrator.agents.process import AgentProcess, Outcome
from orchestrator.agents.prompts import (
    Feedback,
    PromptInput,
    load_role,
    render_feedback,
    render_prompt,
)
from orchestrator.agents.runner import AgentJob, AgentRun, LiveAgents, prepare, usage_of
from orchestrator.envs import work_env
from orchestrator.errors import OrchestrateError
from orchestrator.gitops import Git, team_branch
from orchestrator.paths import SHARED_WORKTREE, StateLayout
from orchestrator.plan.load import LoadedPlan
from orchestrator.plan.models import Plan, Team
from orchestrator.redact import Redactor
from orchestrator.run.executor import (
    AgentEnd,
    AttemptHooks,
    AttemptOutcome,
    AttemptRecord,
    AttemptRequest,
    AttemptStart,
    CheckOutcome,
)
from orchestrator.run.worktree_setup import CopyRefused, copy_untracked, run_setup
from orchestrator.state.store import Store, Usage, new_agent_id
from orchestrator.verify import CheckResult, find_deliverables, run_checks

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


@dataclass
class RunSite:
    """What an executor on this machine holds for one run."""

    run_id: str
    loaded: LoadedPlan
    store: Store
    layout: StateLayout
    git: Git
    kill_grace: float
    live: LiveAgents = field(default_factory=LiveAgents)
    shared_worktree: Path | None = None
    shared_branch: str | None = None
    commit_lock: anyio.Lock = field(default_factory=anyio.Lock)
    secrets: tuple[str, ...] = ()
    """What every prompt, log and summary masks beyond an agent's own secret variables
    (:func:`orchestrator.agents.runner.run_secrets`: orchestrate's, the Redis password)."""
    setup_lock: anyio.Lock = field(default_factory=anyio.Lock)
    """Held while the shared worktree runs the plan's ``setup:`` (once for the run)."""

    @property
    def plan(self) -> Plan:
        return self.loaded.plan


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
        return cls(
            success=verdict.success,
            reason=verdict.reason,
            # What the agent itself said went wrong (the exit code is shown on its own).
            error=verdict.reason if verdict.reason != exit_reason(outcome) else None,
            usage=usage_of(verdict),
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


class Attempt:
    """Does one :class:`AttemptRequest` (see the module docstring). Use :meth:`run` once."""

    def __init__(self, site: RunSite, request: AttemptRequest, hooks: AttemptHooks) -> None:
        self.site = site
        self.req = request
        self.hooks = hooks
        self.plan = site.plan
        self.team: Team = self.plan.team(request.team_id)
        if site.shared_worktree is not None:
            self.worktree = site.shared_worktree
            self.branch = site.shared_branch or ""
        else:
            self.worktree = site.layout.worktree(site.run_id, self.team.id)
            self.branch = team_branch(site.run_id, self.team.id)
        self.agent_id = ""
        self.session_id = request.session_id
        self.log = log.bind(run=site.run_id, team=self.team.id, attempt=request.attempt)

    @property
    def attempt(self) -> int:
        return self.req.attempt

    def _outcome(self, **fields: object) -> AttemptOutcome:
        return AttemptOutcome(
            run_id=self.site.run_id,
            team_id=self.team.id,
            attempt=self.attempt,
            agent_id=self.agent_id,
            **fields,
        )

    async def run(self) -> AttemptOutcome:
        if self.req.prepare:
            try:
                to_merge = await self._prepare()
            except OrchestrateError as exc:
                return self._outcome(setup_error=str(exc))
            conflict = await self._merge_upstream(to_merge)
            if conflict is not None:
                return self._outcome(setup_error=conflict)
        if self.req.attach is not None:
            return await self._reattach(self.req.attach)
        return await self._start()

    # -- the worktree -------------------------------------------------------------------

    def _direct_upstream_branches(self) -> list[str]:
        """The branches of the teams this one names in ``depends_on``, in plan order.

        Each of them already holds its own upstream teams' work (merged when that
        team started), so merging these brings in every transitive upstream.
        """
        direct = set(self.team.depends_on)
        run_id = self.site.run_id
        return [team_branch(run_id, t.id) for t in self.plan.teams if t.id in direct]

    async def _prepare(self) -> list[str] | None:
        """Make the worktree; the upstream branches still to merge (None: ask git)."""
        if self.site.shared_worktree is not None:
            return []
        upstream = self._direct_upstream_branches()
        # A fresh team starts on its first upstream's tip: with one upstream there is
        # nothing left to merge; the base commit is in every upstream branch already.
        start = upstream[0] if upstream else self.req.base_commit
        git = self.site.git
        created = await git.add_worktree(self.worktree, self.branch, start)
        if created:
            return upstream[1:]
        await git.abort_merge(self.worktree)  # one a crashed orchestrator left
        return None  # a reused worktree: find out what is merged already

    async def _merge_upstream(self, branches: list[str] | None) -> str | None:
        """Merge the direct upstream teams' branches (plan order); a conflict's description.

        Branches already merged (a resumed team, the branch it started on) are skipped.
        """
        if self.site.shared_worktree is not None:
            return None
        git = self.site.git
        if branches is None:
            branches = await git.not_merged(self.worktree, self._direct_upstream_branches())
        if not branches:
            return None
        try:
            merged = await git.merge(
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

    # -- the agent ----------------------------------------------------------------------

    def _work_env(self) -> dict[str, str]:
        """The agent's environment without its ``ORCHESTRATE_*`` layer: what the checks get."""
        config = self.plan.agent_config(self.plan.agent_name(self.team))
        return work_env(
            allow=self.plan.env_allow, layers=[self.plan.env, config.env, self.team.env]
        )

    # -- the worktree's set-up (plan copy: and setup:) ----------------------------------------

    def _setup_marker(self, who: str) -> Path:
        """Written once ``who``'s set-up passed in this worktree (it is not run again)."""
        return self.worktree.parent / f".{who}.setup-done"

    async def _copy(self) -> tuple[str, ...]:
        """Copy the plan's and the team's ``copy:`` files in; their secret values.

        Raises :class:`~orchestrator.run.worktree_setup.CopyRefused`.
        """
        site = self.site
        copies = self.plan.copies(self.team)
        if site.shared_worktree is None:
            return (await copy_untracked(site.loaded.repo_root, self.worktree, copies)).secrets
        async with site.setup_lock:  # teams share the worktree: one copier at a time
            return (await copy_untracked(site.loaded.repo_root, self.worktree, copies)).secrets

    async def _setup(self, secrets: Sequence[str]) -> str | None:
        """Run the set-up commands not yet run in this worktree; why they failed, or None.

        Worktree isolation: the plan's then the team's, once per team worktree.
        Shared: the plan's once for the run (under a lock), then the team's.
        Their output goes to the team's log as lines of this attempt.
        """
        site, team, attempt = self.site, self.team, self.attempt

        async def on_lines(lines: list[str]) -> None:
            await site.store.append_log(site.run_id, team.id, attempt, lines)

        async def run(who: str, commands: Sequence[str | Sequence[str]]) -> str | None:
            marker = self._setup_marker(who)
            if not commands or await anyio.Path(marker).exists():
                return None
            results = await run_setup(
                self.worktree,
                commands,
                env=self._work_env(),
                on_lines=on_lines,
                time_limit=self.plan.timeout(team),
                redactor=Redactor([*site.secrets, *secrets]),
            )
            failed = next((r for r in results if not r.ok), None)
            if failed is not None:
                return "\n".join([failed.describe(), *failed.tail])
            await anyio.Path(marker).write_text(f"{time.time()!r}\n")
            return None

        if site.shared_worktree is None:
            return await run(team.id, self.plan.setup_commands(team))
        async with site.setup_lock:
            failed = await run(SHARED_WORKTREE, self.plan.setup)
        return failed or await run(team.id, team.setup)

    async def _setup_failed(self, reason: str) -> AttemptOutcome:
        """The set-up failed after ``running`` was written: the attempt ends, not passed."""
        await self.hooks.ended(AgentEnd(ok=False, exit_code=None, reason=reason.splitlines()[0]))
        first, *tail = reason.splitlines()
        feedback = Feedback(attempt=self.attempt, reason=first, log_tail="\n".join(tail) or None)
        await self._record_judgement(None, reason)
        return self._outcome(reason=reason, feedback=feedback)

    async def _start(self) -> AttemptOutcome:
        site, team, req = self.site, self.team, self.req
        try:
            copied_secrets = await self._copy()
        except CopyRefused as exc:
            return self._outcome(setup_error=str(exc))
        secrets = (*site.secrets, *copied_secrets)
        agent_id = new_agent_id()
        self.agent_id = agent_id
        structlog.contextvars.bind_contextvars(team=team.id, agent=agent_id)
        prompt_file = site.layout.prompt_file(site.run_id, team.id, self.attempt)
        log_file = site.layout.log_file(site.run_id, team.id, self.attempt)
        status_file = site.layout.status_file(site.run_id, team.id, self.attempt)
        config = self.plan.agent_config(self.plan.agent_name(team))
        feedback = req.feedback
        resume = self.session_id if (feedback is not None and config.resume_session) else None
        prompt_input = PromptInput(
            run_id=site.run_id,
            plan=self.plan,
            team=team,
            attempt=self.attempt,
            max_attempts=req.max_attempts,
            workdir=self.worktree,
            role=load_role(team.role, site.loaded.repo_root),
            upstream=req.upstream,
            feedback=feedback,
        )
        if resume is not None:  # the agent remembers its task: send only what went wrong
            prompt = render_feedback(prompt_input)
        else:
            prompt = render_prompt(prompt_input, plan_file=site.loaded.path)
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
                    "ORCHESTRATE_RUN": site.run_id,
                    "ORCHESTRATE_TEAM": team.id,
                    "ORCHESTRATE_AGENT_ID": agent_id,
                    "ORCHESTRATE_ATTEMPT": str(self.attempt),
                    "ORCHESTRATE_PROMPT_FILE": str(prompt_file),
                },
                secrets=secrets,
                run_id=site.run_id,
                model=team.model,
                resume_session_id=resume,
                max_budget_usd=team.budget.usd if team.budget else None,
            )
        )
        await self.hooks.starting(
            AttemptStart(
                agent_id=agent_id,
                branch=self.branch,
                worktree=self.worktree,
                log=log_file,
                status=status_file,
                prompt_file=prompt_file,
                session_id=resume,
            )
        )
        failed = await self._setup(copied_secrets)
        if failed is not None:
            return await self._setup_failed(failed)
        self.log.debug("starting agent", agent=agent_id, argv=prepared.argv)
        proc = await AgentProcess.start(prepared.launch)
        return await self._follow(
            proc, AgentRun(prepared.adapter), self.plan.timeout(team), fresh=True
        )

    async def _reattach(self, rec: AttemptRecord) -> AttemptOutcome:
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
        await self.hooks.attached(rec, proc.running)
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
    ) -> AttemptOutcome:
        """Follow ``proc`` to its end (its output to Redis, its offset recorded), then judge."""
        site, team, attempt, epoch = self.site, self.team, self.attempt, self.req.epoch
        store, run_id = site.store, site.run_id

        async def on_lines(shown: list[str], session: str | None) -> None:
            await store.append_log(run_id, team.id, attempt, shown)
            fields = {"offset": str(proc.offset)}
            if session:
                fields["session_id"] = session
            await store.update_attempt(run_id, team.id, attempt, fields, epoch=epoch)

        with site.live.track(proc):
            async with proc:
                try:
                    if fresh:
                        created = "" if proc.create_time is None else repr(proc.create_time)
                        await store.update_attempt(
                            run_id,
                            team.id,
                            attempt,
                            {"pid": str(proc.pid), "pid_created": created},
                            epoch=epoch,
                        )
                    outcome = await run.follow(
                        proc,
                        timeout=timeout,
                        stall_timeout=self.plan.stall_timeout(team),
                        on_lines=on_lines,
                        grace=site.kill_grace,
                    )
                except BaseException:
                    if self.hooks.leave_running():
                        proc.detach()  # the orchestrator that takes over follows it
                    raise
        tail = list(run.tail)
        judged = Judged.of(run.verdict(outcome), outcome, tail)
        if judged.session_id:
            self.session_id = judged.session_id
        await self.hooks.ended(
            AgentEnd(
                ok=outcome.ok,
                exit_code=outcome.exit_code,
                reason=judged.reason,
                session_id=judged.session_id,
                usage=judged.usage or Usage(),
                count_usage=count_usage,
            )
        )
        limit = run.limits.limit
        verified = await self._verify(outcome, judged, tail)
        if verified.ok or limit is None or limit.resets_at is None:
            return verified
        return verified.model_copy(
            update={
                "limit_resets_at": limit.resets_at.timestamp(),
                "limit_message": limit.message,
            }
        )

    # -- verification and commit ----------------------------------------------------------

    async def _verify(self, outcome: Outcome, judged: Judged, tail: list[str]) -> AttemptOutcome:
        team = self.team
        report = find_deliverables(self.worktree, team.deliverables)
        checks: list[CheckResult] = []
        if judged.success and team.checks:
            checks = await run_checks(
                self.worktree,
                team.checks,
                time_limit=self.plan.defaults.check_timeout,
                env=self._work_env(),
            )
        failed = [c for c in checks if not c.passed]
        ok = judged.success and report.ok and not failed
        reason = "" if ok else _summarize(report.problems, failed, judged)
        await self._record_judgement(checks if judged.success and team.checks else None, reason)
        final = self._kept_final_message(judged.final_message)
        commit: str | None = None
        feedback: Feedback | None = None
        if ok:
            commit = await self._commit(final)
        else:
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
        return self._outcome(
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            timed_out=outcome.timed_out,
            stalled=outcome.stalled,
            lost=outcome.lost,
            success=judged.success,
            ok=ok,
            reason=reason,
            fatal=judged.fatal,
            retryable=judged.retryable,
            retry_after=judged.retry_after,
            deliverables=report.found,
            checks=[CheckOutcome.of(c) for c in checks],
            usage=judged.usage or Usage(),
            session_id=self.session_id,
            final_message=final,
            commit=commit,
            feedback=feedback,
        )

    async def _record_judgement(self, checks: Sequence[CheckResult] | None, reason: str) -> None:
        """On the attempt: each check's result (field ``checks``, JSON, when they ran) and
        why it did not pass (``reason``: the missing files, the failing checks)."""
        redactor = Redactor(self.site.secrets)
        fields = {"checks": checks_json(checks, redactor)} if checks is not None else {}
        if reason:
            fields["reason"] = reason
        if fields:
            site = self.site
            await site.store.update_attempt(
                site.run_id, self.team.id, self.attempt, fields, epoch=self.req.epoch
            )

    async def _commit(self, final: str | None) -> str:
        """Record the final message, then commit the worktree; the commit holding the work."""
        site = self.site
        message = (
            f"orchestrate: team {self.team.id} ({self.team.title})\n\n"
            f"Run: {site.run_id}\nAgent: {self.agent_id}\nAttempt: {self.attempt}\n"
        )
        crash_point("before-commit", self.team.id)
        if final:  # before `succeeded`: a resume restores it for the downstream prompts
            await site.store.update_attempt(
                site.run_id,
                self.team.id,
                self.attempt,
                {"final_message": final},
                epoch=self.req.epoch,
            )
        if site.shared_worktree is not None:
            async with site.commit_lock:
                commit = await site.git.commit_all(self.worktree, message)
            return commit or ""
        commit = await site.git.commit_all(self.worktree, message)
        if commit is None:  # committed before a crash (a resume judges it again)
            commit = await site.git.head(self.worktree)
        return commit

    def _kept_final_message(self, text: str | None) -> str | None:
        """The final message as stored and quoted downstream: redacted, at most
        :data:`FINAL_MESSAGE_CHARS` (its beginning)."""
        text = (text or "").strip()
        if not text:
            return None
        text = Redactor(self.site.secrets).redact(text)
        if len(text) > FINAL_MESSAGE_CHARS:
            text = text[: FINAL_MESSAGE_CHARS - 1].rstrip() + "…"
        return text


def checks_json(checks: Sequence[CheckResult], redactor: Redactor) -> str:
    """``[{"command", "passed", "exit_code", "duration", "timed_out", "output"}]`` (an
    attempt's ``checks`` field; the report and the dashboard read it; output redacted)."""
    return json.dumps(
        [
            {
                "command": c.command,
                "passed": c.passed,
                "exit_code": c.exit_code,
                "duration": round(c.duration, 3),
                "timed_out": c.timed_out,
                "output": redactor.redact(c.output_tail),
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
