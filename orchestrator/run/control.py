"""Cancel one team, retry one failed team: from the CLI, the web dashboard, and in the engine.

Two sides share this module:

- the requester (:func:`cancel_team`, :func:`retry_team`), a CLI command or the
  web dashboard. When a live orchestrator drives the run, it sends a request
  to it (:meth:`Store.send_request`, the run's ``requests`` stream) and waits
  for the team's status to change; the engine does the work, because only it
  owns the team's agent and its scheduler. When none does, it changes the
  store itself: a cancelled team stays cancelled until a resume; a retried
  team is ``retrying`` (its blocked downstream teams ``pending``) and the next
  ``orchestrate resume`` runs it with a fresh set of retries.
- the engine (:class:`LiveControl`): its cancel watcher reads the requests
  every ``CANCEL_POLL`` and acts on them through the scheduler's state (the
  cancel scope of each running team, the status of each team, the channel the
  scheduler waits on).

::

    requester                  Redis                          engine (LiveControl)
    cancel_team(run, db) --XADD requests--> {cancel-team db} --> cancelled, scope.cancel()
                         <--XREAD events--  team db cancelled
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from orchestrator.errors import IllegalTransitionError, StaleEpochError, UsageError
from orchestrator.plan import graph
from orchestrator.state.status import TeamStatus

if TYPE_CHECKING:
    from anyio.abc import ObjectSendStream

    from orchestrator.plan.models import Plan
    from orchestrator.run.runtypes import Recovery, RunContext, TeamResult
    from orchestrator.state.store import Store

CANCEL_TEAM = "cancel-team"
RETRY_TEAM = "retry-team"
TAKE_WAIT = 10.0
"""Seconds a requester waits for the live orchestrator to act on its request."""


def who() -> str:
    """``<host> pid <n>``: who asked (it goes into the team's reason)."""
    return f"{socket.gethostname()} pid {os.getpid()}"


# -- the requester ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Done:
    """What :func:`cancel_team` or :func:`retry_team` did."""

    run_id: str
    team: str
    status: TeamStatus
    """The team's status afterwards."""
    live: bool
    """A live orchestrator acted (else the store was changed for the next resume)."""
    unblocked: tuple[str, ...] = ()


async def _team_status(store: Store, run_id: str, team: str) -> TeamStatus:
    run = await store.get_run(run_id)
    if team not in run.team_ids:
        raise UsageError(f"run {run_id} has no team {team!r}")
    return (await store.get_team(run_id, team)).status


async def _is_live(store: Store, run_id: str) -> bool:
    from orchestrator.state.lease import live_holder

    return await live_holder(store, run_id) is not None


async def _wait_change(
    store: Store, run_id: str, team: str, old: TeamStatus, wait: float
) -> TeamStatus | None:
    """The team's new status once it left ``old`` (None: still ``old`` after ``wait`` s)."""
    after = "$"
    with anyio.move_on_after(wait):
        while True:
            status = (await store.get_team(run_id, team)).status
            if status != old:
                return status
            got = await store.read_events(run_id, after=after, block_ms=500)
            if got:
                after = got[-1].id
            elif after == "$":
                after = f"{int(time.time() * 1000) - 1000}-0"
    return None


async def cancel_team(store: Store, run_id: str, team: str, *, wait: float = TAKE_WAIT) -> Done:
    """Cancel one team of a run (its agent stopped; its downstream teams get blocked).

    UsageError for an unknown team or one that already ended.
    """
    status = await _team_status(store, run_id, team)
    if status.final:
        raise UsageError(f"team {team} of run {run_id} is {status}: nothing to cancel")
    if await _is_live(store, run_id):
        await store.send_request(run_id, CANCEL_TEAM, team)
        new = await _wait_change(store, run_id, team, status, wait)
        if new is None:
            raise UsageError(
                f"the orchestrator of run {run_id} did not cancel team {team} within "
                f"{wait:.0f}s; `orchestrate cancel {run_id}` stops the whole run"
            )
        return Done(run_id, team, new, True)
    epoch = (await store.get_run(run_id)).epoch
    st = await store.get_team(run_id, team)
    await _stop_agent(st.fields)
    await store.team_transition(
        run_id, team, TeamStatus.CANCELLED, epoch=epoch, attempt=st.attempt,
        reason=f"cancelled by {who()}",
    )  # fmt: skip
    return Done(run_id, team, TeamStatus.CANCELLED, False)


async def _stop_agent(fields: dict[str, str]) -> None:
    """Stop a team's agent left running without an orchestrator (a SIGHUP-detached run)."""
    from pathlib import Path

    from orchestrator.agents.process import AgentProcess

    pid = int(fields.get("pid") or 0)
    if pid <= 0 or not fields.get("status_file"):
        return
    created = float(fields["pid_created"]) if fields.get("pid_created") else None
    proc = await AgentProcess.attach(
        pid, Path(fields.get("log", "")), Path(fields["status_file"]), 0, create_time=created
    )
    if proc.running:
        await proc.terminate(5.0)


async def mark_retry(
    store: Store, plan: Plan, run_id: str, team: str, *, epoch: int, reason: str
) -> tuple[int, list[str]]:
    """Record a failed team's retry: ``retrying`` at the next attempt (with a fresh set of
    retries from there, as ``resume --retry-failed``), and its blocked downstream teams
    ``pending``. Returns (the new attempt, the teams unblocked)."""
    st = await store.get_team(run_id, team)
    n = st.attempt
    await store.team_transition(
        run_id, team, TeamStatus.RETRYING, epoch=epoch, attempt=n + 1, reason=reason,
        fields={"attempt_base": str(n)},
    )  # fmt: skip
    unblocked = []
    below = graph.downstream(plan, team)
    for tid, other in (await store.get_teams(run_id)).items():
        if tid in below and other.status is TeamStatus.BLOCKED:
            await store.team_transition(
                run_id, tid, TeamStatus.PENDING, epoch=epoch, attempt=other.attempt, reason=reason
            )
            unblocked.append(tid)
    return n + 1, unblocked


async def retry_team(store: Store, run_id: str, team: str, *, wait: float = TAKE_WAIT) -> Done:
    """Retry a failed team. On a live run its orchestrator starts it again now; otherwise
    the team is marked for the next ``orchestrate resume``. UsageError unless it failed."""
    from orchestrator.state.runs import recorded_plan

    status = await _team_status(store, run_id, team)
    if status is not TeamStatus.FAILED:
        raise UsageError(f"team {team} of run {run_id} is {status}: only a failed team is retried")
    if await _is_live(store, run_id):
        await store.send_request(run_id, RETRY_TEAM, team)
        new = await _wait_change(store, run_id, team, status, wait)
        if new is None:
            raise UsageError(
                f"the orchestrator of run {run_id} did not retry team {team} (it starts no "
                "team once the integration began); retry it once the run ended"
            )
        return Done(run_id, team, new, True)
    run = await store.get_run(run_id)
    plan = recorded_plan(run)
    if plan is None:
        raise UsageError(f"run {run_id} has no readable recorded plan; it cannot be retried")
    _, unblocked = await mark_retry(
        store, plan, run_id, team, epoch=run.epoch, reason=f"retry asked by {who()}"
    )
    return Done(run_id, team, TeamStatus.RETRYING, False, tuple(unblocked))


# -- the engine ----------------------------------------------------------------------------------


@dataclass
class LiveControl:
    """The engine's side: acts on the run's requests while its scheduler runs.

    The scheduler :meth:`attach` es its state while it schedules and
    :meth:`detach` es when it stops (no team starts after that: a retry is
    refused, the requester says so). ``scopes`` holds each running team's cancel scope.
    """

    after: str = field(default_factory=lambda: f"{int(time.time() * 1000)}-0")
    """Requests older than the engine are not for it."""
    scopes: dict[str, anyio.CancelScope] = field(default_factory=dict)
    _inbox: ObjectSendStream[TeamResult] | None = None
    _status: dict[str, TeamStatus] | None = None
    _recoveries: dict[str, Recovery] | None = None
    _waiting: set[str] | None = None
    """The teams the scheduler may start (it starts no other)."""

    def attach(
        self,
        inbox: ObjectSendStream[TeamResult],
        status: dict[str, TeamStatus],
        recoveries: dict[str, Recovery],
        waiting: set[str],
    ) -> None:
        self._inbox, self._status, self._recoveries = inbox, status, recoveries
        self._waiting = waiting

    def detach(self) -> None:
        self._inbox = self._status = self._recoveries = self._waiting = None

    async def poll(self, ctx: RunContext) -> None:
        """Act on the requests sent since the last call (errors of one are logged)."""
        import structlog

        for rid, fields in await ctx.store.read_requests(ctx.run_id, after=self.after):
            self.after = rid
            action, team = fields.get("action"), fields.get("team", "")
            if team not in {t.id for t in ctx.plan.teams}:
                continue
            try:
                if action == CANCEL_TEAM:
                    await self._cancel(ctx, team)
                elif action == RETRY_TEAM:
                    await self._retry(ctx, team)
            except (IllegalTransitionError, StaleEpochError) as exc:
                structlog.get_logger("orchestrate.control").warning(
                    "request not taken", action=action, team=team, error=str(exc)
                )

    async def _cancel(self, ctx: RunContext, team: str) -> None:
        from orchestrator.run.runtypes import Notice, TeamResult

        status, waiting = self._status, self._waiting
        cancelled = TeamStatus.CANCELLED
        reason = "cancelled on request"
        st = await ctx.store.get_team(ctx.run_id, team)
        if team in self.scopes:  # running: record why, then stop it (its runner agrees)
            await ctx.store.team_transition(
                ctx.run_id, team, cancelled, epoch=ctx.epoch, attempt=st.attempt, reason=reason
            )
            self.scopes[team].cancel()
        elif status is not None and waiting is not None and self._inbox is not None and (
            team in waiting
        ):
            waiting.discard(team)  # before any await: the scheduler cannot start it now
            status[team] = cancelled
            await ctx.store.team_transition(
                ctx.run_id, team, cancelled, epoch=ctx.epoch, attempt=st.attempt, reason=reason
            )
            await self._inbox.send(TeamResult(team=team, status=cancelled, reason=reason))
        else:
            return
        ctx.notify(Notice(time.time(), team, cancelled, reason))

    async def _retry(self, ctx: RunContext, team: str) -> None:
        from orchestrator.agents.prompts import Feedback
        from orchestrator.run.runtypes import Notice, Recovery, TeamResult

        status, inbox, recoveries = self._status, self._inbox, self._recoveries
        waiting = self._waiting
        if status is None or inbox is None or recoveries is None or waiting is None:
            return
        if status.get(team) is not TeamStatus.FAILED:
            return
        before = await ctx.store.get_team(ctx.run_id, team)
        spec = ctx.plan.team(team)
        attempt, unblocked = await mark_retry(
            ctx.store, ctx.plan, ctx.run_id, team, epoch=ctx.epoch, reason="retry on request"
        )
        for tid in unblocked:
            if status.get(tid) is TeamStatus.BLOCKED:
                status[tid] = TeamStatus.PENDING
                waiting.add(tid)
        feedback = Feedback(attempt=attempt - 1, reason=before.reason or TeamStatus.FAILED)
        most = attempt + ctx.plan.retries(spec)
        recoveries[team] = Recovery(attempt, most, None, feedback, before.session_id)
        status[team] = TeamStatus.RETRYING
        waiting.add(team)  # a failed team never starts: only now may the scheduler
        ctx.results.pop(team, None)
        ctx.notify(Notice(time.time(), team, TeamStatus.RETRYING, "retry on request"))
        await inbox.send(TeamResult(team=team, status=TeamStatus.RETRYING))  # wakes it up
