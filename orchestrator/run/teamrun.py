"""One team's life in a run, as the scheduler decides it: attempts, retries, its end.

:class:`TeamRunner` is what the scheduler (:mod:`orchestrator.run.engine`) starts
for a team whose upstream teams succeeded. It asks the run's executor
(:mod:`orchestrator.run.executor`) for attempt after attempt and decides what each
:class:`~orchestrator.run.executor.AttemptOutcome` means:

- passed (the executor verified and committed it): ``succeeded``, with the
  deliverables' hashes;
- did not pass: ``retrying`` with the feedback after tenacity's exponential
  backoff with jitter (longer after a rate limit, at least what the service
  asked), until ``retries`` are spent, then ``failed`` with the reason; a fatal
  error (authentication) or a setup error (an upstream merge conflict) fails
  at once; a spent budget stops it before the attempt starts (it waits, unchanged,
  for ``resume --budget-usd``).

It is the only writer of the team's transitions, each fenced by the run's
lease epoch. The executor calls back, as the :class:`AttemptHooks`, for the
two it needs in the middle of an attempt: ``running`` before the agent starts
(with everything a later ``resume`` needs to re-attach: agent id, log, status
file, prompt) and ``verifying`` once the agent ended (with the usage counted
against the budgets). A :class:`~orchestrator.run.runtypes.Recovery` (built by
:mod:`orchestrator.run.resume`) makes a runner re-attach to a running attempt,
judge one that ended, or start the next one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import anyio
import structlog

from orchestrator.agents.prompts import Feedback, UpstreamResult
from orchestrator.errors import OrchestrateError, StaleEpochError
from orchestrator.gitops import team_branch
from orchestrator.plan.models import Team
from orchestrator.run.executor import (
    AgentEnd,
    AttemptOutcome,
    AttemptRecord,
    AttemptRequest,
    AttemptStart,
    Executor,
)
from orchestrator.run.runtypes import Notice, Notify, Recovery, RunContext, TeamResult
from orchestrator.state.gates import (
    GateAction,
    approve_command,
    gate_action,
    get_gate,
    reject_command,
    rejection_feedback,
    request_gate,
)
from orchestrator.state.pauses import active_pauses, pause_provider, pause_until
from orchestrator.state.status import RunStatus, TeamStatus
from orchestrator.state.store import Usage

__all__ = ["Notice", "Notify", "Recovery", "RunContext", "TeamResult", "TeamRunner"]

log = structlog.get_logger("orchestrate.team")

GATE_POLL = 0.5
"""Seconds between looks at a waiting gate (a decision comes from another process)."""


class TeamRunner:
    """Runs one team to its end (succeeded, failed) or until cancelled."""

    def __init__(self, ctx: RunContext, team: Team, recovery: Recovery | None = None) -> None:
        self.ctx = ctx
        self.team = team
        self.plan = ctx.plan
        self.recovery = recovery
        self.max_attempts = recovery.max_attempts if recovery else self.plan.retries(team) + 1
        if ctx.shared_worktree is not None:
            self.branch = ctx.shared_branch or ""
        else:
            self.branch = team_branch(ctx.run_id, team.id)
        self.attempt = 0
        self.status = TeamStatus.PENDING
        self.agent_id = ""
        self.session_id: str | None = recovery.session_id if recovery else None
        self._asked = 0
        """The attempt last asked of the executor (its hooks are about that one)."""
        self._files: list[str] | None = None
        self._final: str | None = None
        self.log = log.bind(run=ctx.run_id, team=team.id)

    @property
    def executor(self) -> Executor:
        if self.ctx.executor is None:
            raise RuntimeError("the run has no executor")  # the engine sets it first
        return self.ctx.executor

    # -- helpers ------------------------------------------------------------------------

    def _notify(self, status: str, detail: str = "") -> None:
        self.ctx.notify(Notice(time.time(), self.team.id, status, detail))

    async def _transition(
        self,
        to: TeamStatus,
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

    def _result(self, status: TeamStatus, reason: str | None = None, **kw: object) -> TeamResult:
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
        failed = TeamStatus.FAILED
        await self._transition(failed, fields={"finished": repr(time.time())}, reason=reason)
        self._notify(failed, reason)
        return self._result(failed, reason)

    # -- the team's life ----------------------------------------------------------------

    async def run(self) -> TeamResult:
        """Attempt, judge, decide; returns the team's result. Cancellation marks it cancelled."""
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
        # A team waiting at its gate keeps waiting: its work is done, a resume asks again.
        done = self.status.final or self.status is TeamStatus.AWAITING_APPROVAL
        if done or self.ctx.leaves_agents:
            return
        ctx = self.ctx
        if ctx.cancel_requested.is_set():  # `orchestrate cancel`, not Ctrl-C
            reason = ctx.cancel_reason or "the run was cancelled"
        elif ctx.budget_stop is not None:  # a hard budget was reached
            reason = ctx.budget_stop
        else:
            reason = "the run was interrupted"
        try:
            await self._transition(TeamStatus.CANCELLED, reason=reason)
        except OrchestrateError as exc:  # the run is stopping anyway; say it in the debug log
            self.log.warning("could not record the cancellation", error=str(exc))

    async def _run(self) -> TeamResult:
        rec = self.recovery
        feedback: Feedback | None = rec.feedback if rec else None
        attempt = rec.attempt if rec else 1
        attach = rec.attach if rec else None
        prepare = True  # the first request sets up the worktree
        if rec is not None and rec.awaiting:  # a resume: the work waits at the gate
            self.attempt = attempt
            self.status = TeamStatus.AWAITING_APPROVAL
            decided = await self._decision()
            if isinstance(decided, TeamResult):
                return decided
            feedback = decided
            attempt = self.attempt = attempt + 1
            await self._transition(TeamStatus.RETRYING, reason=feedback.reason)
            self._notify(TeamStatus.RETRYING, feedback.reason)
        while True:
            spent = self.ctx.budget.exhausted(self.team) if attach is None else None
            if spent is not None:  # it waits, as it is, for a person to raise the budget
                result = self._result(self.status, spent)
                result.budget_spent = True
                result.resume = Recovery(
                    attempt=attempt,
                    max_attempts=self.max_attempts,
                    feedback=feedback,
                    session_id=self.session_id,
                )
                self._notify("stopping", spent)
                return result
            try:
                outcome = await self.executor.run_attempt(
                    self._request(attempt, feedback, attach, prepare), self
                )
            except StaleEpochError:
                raise
            except OrchestrateError as exc:
                self.attempt = attempt
                return await self._fail(str(exc))
            if outcome.setup_error is not None:
                return await self._fail(outcome.setup_error)
            attach, prepare = None, False
            self.attempt = attempt
            if outcome.session_id:
                self.session_id = outcome.session_id
            if outcome.ok and not self.team.approval:
                return await self._succeed(outcome)
            if outcome.ok:
                await self._await_approval(outcome)
                decided = await self._decision()
                if isinstance(decided, TeamResult):
                    return decided
                feedback = decided
                attempt = self.attempt = self.attempt + 1
                await self._transition(TeamStatus.RETRYING, reason=feedback.reason)
                self._notify(TeamStatus.RETRYING, feedback.reason)
                continue
            feedback = outcome.feedback
            if outcome.limit_resets_at is not None:
                return await self._pause(outcome)
            if outcome.fatal:
                return await self._fail(f"{outcome.reason} (not retried)")
            if self.attempt >= self.max_attempts:
                return await self._fail(outcome.reason)
            attempt = self.attempt = self.attempt + 1
            await self._transition(TeamStatus.RETRYING, reason=outcome.reason)
            self._notify(TeamStatus.RETRYING, outcome.reason)
            pause = self.ctx.options.backoff(self.attempt - 1)
            if outcome.retry_after is not None:
                pause = max(pause, outcome.retry_after)
            elif outcome.retryable:
                pause *= 4  # a rate limit or an overload: give the service time
            await anyio.sleep(pause)

    def _request(
        self,
        attempt: int,
        feedback: Feedback | None,
        attach: AttemptRecord | None,
        prepare: bool,
    ) -> AttemptRequest:
        ctx = self.ctx
        self._asked = attempt
        return AttemptRequest(
            run_id=ctx.run_id,
            team_id=self.team.id,
            attempt=attempt,
            epoch=ctx.epoch,
            max_attempts=self.max_attempts,
            base_commit=ctx.base_commit,
            prepare=prepare,
            feedback=feedback,
            session_id=self.session_id,
            upstream=self._upstream(),
            attach=attach,
        )

    def _upstream(self) -> list[UpstreamResult]:
        out = []
        for tid in self.ctx.upstream(self.team.id):
            res = self.ctx.results.get(tid)
            up = self.ctx.team(tid)
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

    # -- usage limits ------------------------------------------------------------------------

    async def _pause(self, outcome: AttemptOutcome) -> TeamResult:
        """The agent hit a usage limit: the attempt does not count; the team is ``paused``
        and no agent of its provider starts until the reset (the scheduler restarts it)."""
        ctx = self.ctx
        provider = ctx.provider(self.team)
        until = pause_until(outcome.limit_resets_at)
        assert until is not None
        message = outcome.limit_message or "usage limit"
        await pause_provider(
            ctx.store, ctx.run_id, provider, until=until, team=self.team.id, message=message
        )
        pauses = await active_pauses(ctx.store, ctx.run_id)
        ctx.pauses.update(pauses)
        pause = ctx.pauses.get(provider)
        until = pause.until if pause is not None else until
        await ctx.store.update_attempt(
            ctx.run_id, self.team.id, self.attempt, {"uncounted": "usage limit"}, epoch=ctx.epoch
        )
        self.max_attempts += 1
        text = pause.until_text() if pause is not None else repr(until)
        reason = f"{provider} usage limit: paused until {text} ({message})"
        await self._transition(
            TeamStatus.PAUSED,
            fields={"paused_until": repr(until), "max_attempts": str(self.max_attempts)},
            reason=reason,
        )
        self._notify(TeamStatus.PAUSED, reason)
        feedback = Feedback(
            attempt=self.attempt,
            reason=f"the attempt was cut short by a usage limit ({message}); "
            "go on from where it stopped",
        )
        result = self._result(TeamStatus.PAUSED, reason)
        result.resume = Recovery(
            attempt=self.attempt + 1,
            max_attempts=self.max_attempts,
            feedback=feedback,
            session_id=self.session_id,
        )
        return result

    # -- the approval gate ------------------------------------------------------------------

    async def _await_approval(self, outcome: AttemptOutcome) -> None:
        """The work passed and is committed: wait as ``awaiting_approval`` (gate opened)."""
        ctx = self.ctx
        await self._transition(
            TeamStatus.AWAITING_APPROVAL,
            fields={"commit": outcome.commit or ""},
            deliverables=outcome.deliverables,
        )
        self._files, self._final = outcome.files, outcome.final_message
        await request_gate(ctx.store, ctx.run_id, self.team.id, attempt=self.attempt)
        self._notify(
            TeamStatus.AWAITING_APPROVAL,
            f"attempt {self.attempt}: `{approve_command(ctx.run_id, self.team.id)}` or "
            f"`{reject_command(ctx.run_id, self.team.id)}`",
        )

    async def _decision(self) -> TeamResult | Feedback:
        """Wait for the gate's decision: the team's end (approved: succeeded; rejected with
        its retries spent: failed), or the feedback of its next attempt (rejected)."""
        ctx, tid = self.ctx, self.team.id
        gate = await request_gate(ctx.store, ctx.run_id, tid, attempt=self.attempt)
        if not gate.decided and ctx.on_awaiting is not None:
            ctx.on_awaiting(tid)
        ctx.awaiting.add(tid)
        try:
            while (
                action := gate_action(gate, attempt=self.attempt, max_attempts=self.max_attempts)
            ) is GateAction.WAIT:
                await anyio.sleep(GATE_POLL)
                gate = await get_gate(ctx.store, ctx.run_id, tid) or gate
        finally:
            ctx.awaiting.discard(tid)
        said = f" by {gate.by}" + (f": {gate.note}" if gate.note else "")
        if action is GateAction.RELEASE:
            await self._transition(TeamStatus.SUCCEEDED, fields={"finished": repr(time.time())})
            self._notify(TeamStatus.SUCCEEDED, f"approved{said}  branch {self.branch}")
            files, final = await self._kept_result()
            return self._result(TeamStatus.SUCCEEDED, files=files, final_message=final)
        reason = rejection_feedback(gate)
        if action is GateAction.FAIL:
            return await self._fail(reason)
        return Feedback(attempt=self.attempt, reason=reason)

    async def _kept_result(self) -> tuple[list[str], str | None]:
        """The files and summary of the approved attempt (from the store after a resume)."""
        if self._files is not None:
            return self._files, self._final
        ctx = self.ctx
        state = await ctx.store.get_team(ctx.run_id, self.team.id)
        files = [p for p, digest in state.deliverables.items() if digest]
        attempts = await ctx.store.get_attempts(ctx.run_id, self.team.id)
        last = [a for a in attempts if a.attempt == self.attempt]
        return files, (last[0].fields.get("final_message") if last else None) or None

    async def _succeed(self, outcome: AttemptOutcome) -> TeamResult:
        await self._transition(
            TeamStatus.SUCCEEDED,
            fields={"finished": repr(time.time()), "commit": outcome.commit or ""},
            deliverables=outcome.deliverables,
        )
        self._notify(TeamStatus.SUCCEEDED, f"attempt {self.attempt}  branch {self.branch}")
        return self._result(
            TeamStatus.SUCCEEDED, files=outcome.files, final_message=outcome.final_message
        )

    # -- the executor's hooks (AttemptHooks): the transitions in the middle of an attempt --

    async def starting(self, start: AttemptStart) -> None:
        """Write ``running`` with what a resume needs, before the agent starts."""
        self.agent_id = start.agent_id
        self.attempt = attempt = self._asked  # the attempt asked for last
        now = repr(time.time())
        await self._transition(
            TeamStatus.RUNNING,
            fields={
                "agent_id": start.agent_id,
                "branch": start.branch,
                "worktree": str(start.worktree),
                "started": now,
                # The team's own start (``started`` is its current attempt's): set once.
                **({"first_started": now} if attempt == 1 else {}),
                "log": str(start.log),
                "status_file": str(start.status),
                "prompt_file": str(start.prompt_file),
                "offset": "0",
                "pid": "",
                "pid_created": "",
                "session_id": start.session_id or "",
                # What the prompt says ("attempt 2 of at most 4"): the board shows the same.
                "max_attempts": str(self.max_attempts),
            },
        )
        detail = f"attempt {attempt}/{self.max_attempts}  agent {start.agent_id}"
        self._notify(TeamStatus.RUNNING, detail)

    async def attached(self, record: AttemptRecord, running: bool) -> None:
        """Following an agent a crashed orchestrator started."""
        self.agent_id = record.agent_id
        self.attempt = record.attempt
        if record.session_id:
            self.session_id = record.session_id
        self.status = TeamStatus.RUNNING
        state = "running" if running else "ended"
        self._notify("attached", f"attempt {self.attempt}  agent {record.agent_id}  ({state})")

    async def ended(self, end: AgentEnd) -> None:
        """The agent ended: record its usage and its end, move to ``verifying``."""
        if not end.ok:  # `orchestrate cancel` kills agents: a clean exit was not killed
            await self._stop_if_cancelled()
        if end.session_id:
            self.session_id = end.session_id
        if end.count_usage:
            await self._record_usage(end.usage)
        # The attempt's end and the move to verifying: one step (one round trip).
        await self._transition(
            TeamStatus.VERIFYING,
            fields={
                "exit_code": "" if end.exit_code is None else str(end.exit_code),
                "finished": repr(time.time()),
                "reason": end.reason or "",
                **({"session_id": end.session_id} if end.session_id else {}),
            },
        )

    def leave_running(self) -> bool:
        """Being cancelled: another orchestrator owns the run, or this one detached."""
        return self.ctx.leaves_agents

    async def _stop_if_cancelled(self) -> None:
        """After an agent ended: if the run was cancelled, wait for the engine to stop us.

        ``orchestrate cancel`` kills the agents before the engine notices: the
        killed attempt must not be judged (nor retried).
        """
        ctx = self.ctx
        if not ctx.cancel_requested.is_set():
            run = await ctx.store.get_run(ctx.run_id)
            if run.status is not RunStatus.CANCELLED:
                return
            ctx.cancel_reason = ctx.cancel_reason or run.meta.get("reason") or None
            ctx.cancel_requested.set()
        await anyio.sleep_forever()  # the engine's watcher cancels the run's task group

    async def _record_usage(self, usage: Usage | None) -> None:
        if usage is None or (usage.tokens == 0 and usage.cost_usd == 0):
            return
        ctx = self.ctx
        ctx.budget.add(self.team.id, usage)
        limit = ctx.budget.limit
        if limit is not None and limit.hard and not ctx.hard_stop.is_set():
            why = ctx.budget.exhausted(None)
            if why is not None:  # `hard: true`: the running agents stop now too
                ctx.budget_stop = f"{why} (hard: the running agents were stopped)"
                ctx.hard_stop.set()
        await ctx.store.add_usage(
            ctx.run_id, self.team.id, usage, epoch=ctx.epoch, attempt=self.attempt
        )
