"""Crash safety: ``orchestrate resume`` and ``orchestrate cancel``.

A resume takes the run's lease (a dead holder's lease on this host is taken
over at once; a live holder's is refused with one line naming it), then
reconciles every team from Redis and the disk before scheduling: what to do
with each team is decided without IO by :func:`orchestrator.run.reconcile.decide`
(its module has the table: kept, re-attached, judged, restarted, left), and
:func:`reconcile` here applies it (transitions, attempt records, recoveries).

Every process of the run that is not re-attached (an agent of a cancelled
team, a test suite of an unfinished integration) is stopped, and an
unfinished integration starts again from its beginning. Cancelling marks the
run cancelled (a live orchestrator notices and stops), stops every process of
the run (whole process groups, through the recorded supervisor pids and a scan
of ``ORCHESTRATE_RUN`` in process environments) and marks the running teams
cancelled; a cancelled run can be resumed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import anyio
import psutil
import structlog

from orchestrator import forkserver
from orchestrator.agents.process import AgentProcess, find_supervisor, read_status
from orchestrator.agents.prompts import Feedback
from orchestrator.errors import (
    IllegalTransitionError,
    OrchestrateError,
    StaleEpochError,
    UsageError,
)
from orchestrator.gitops import Git
from orchestrator.paths import StateLayout
from orchestrator.plan.load import LoadedPlan, load_plan
from orchestrator.plan.models import Team
from orchestrator.run.engine import Engine, RunResult, StartState, first_error
from orchestrator.run.executor import check_executor
from orchestrator.run.preflight import require_agents
from orchestrator.run.reconcile import STEPS, Action, TeamFacts, decide, start_status
from orchestrator.run.runtypes import (
    AttemptRecord,
    EngineOptions,
    Notice,
    Notify,
    Recovery,
    RunContext,
    Spending,
    TeamResult,
)
from orchestrator.state.budgets import effective_budget, raise_budget
from orchestrator.state.lease import holder_alive, live_holder
from orchestrator.state.runs import RunInfo, plan_of_run, record_crash, write_plan_copy
from orchestrator.state.status import RunStatus, TeamStatus
from orchestrator.state.store import RunState, Store, TeamState

log = structlog.get_logger("orchestrate.resume")

RUN_ENV = "ORCHESTRATE_RUN"


# -- processes --------------------------------------------------------------------------


def run_processes(run_id: str) -> list[psutil.Process]:
    """Every live process whose environment says it belongs to ``run_id``."""
    me = os.getpid()
    out = []
    for proc in psutil.process_iter(["status"]):
        if proc.pid == me or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(RUN_ENV) == run_id:
                out.append(proc)
    return out


async def stop_processes(run_id: str, *, keep_groups: Iterable[int] = (), grace: float) -> int:
    """Stop (TERM, then KILL after ``grace``) every process of the run outside ``keep_groups``.

    Whole process groups are signalled, never our own. Returns how many were found.
    """
    keep = set(keep_groups)
    own = os.getpgid(0)

    def scan() -> list[psutil.Process]:
        found = []
        for proc in run_processes(run_id):
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(proc.pid) not in keep:
                    found.append(proc)
        return found

    def signal_all(procs: list[psutil.Process], sig: int) -> None:
        for proc in procs:
            with contextlib.suppress(psutil.Error, OSError):
                pgid = os.getpgid(proc.pid)
                if pgid != own:
                    os.killpg(pgid, sig)
                else:
                    proc.send_signal(sig)

    procs = await anyio.to_thread.run_sync(scan)
    if not procs:
        return 0
    signal_all(procs, signal.SIGTERM)
    _, alive = await anyio.to_thread.run_sync(lambda: psutil.wait_procs(procs, timeout=grace))
    if alive:
        signal_all(alive, signal.SIGKILL)
        await anyio.to_thread.run_sync(lambda: psutil.wait_procs(alive, timeout=5))
    return len(procs)


# -- the lease ----------------------------------------------------------------------------


async def take_over_dead_lease(store: Store, run_id: str) -> bool:
    """Free the run's lease when its holder is a dead process of this host; True if freed.

    A holder on another host cannot be checked: its lease expires on its own.
    """
    holder = await store.lease_holder(run_id)
    if holder is None or holder_alive(holder):  # another host's: its lease expires
        return False
    freed = await store.break_lease(run_id, holder)
    if freed:
        log.info("took over the lease of a dead orchestrator", pid=holder.pid)
    return bool(freed)


# -- the plan -------------------------------------------------------------------------------


def _same(a: Team, b: Team) -> bool:
    return (a.task, a.deliverables, a.depends_on) == (b.task, b.deliverables, b.depends_on)


def choose_plan(
    run: RunState,
    teams: dict[str, TeamState],
    layout: StateLayout,
    plan_file: Path | None,
) -> tuple[LoadedPlan, list[str], dict[str, str]]:
    """The plan to resume with, notes for the user, and the run fields to update."""
    recorded = plan_of_run(run.meta, run_id=run.run_id)
    if plan_file is None:
        notes = []
        path = Path(run.meta.get("plan_path", ""))
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = path.read_text() if path.is_file() else None
            if text is not None and hashlib.sha256(text.encode()).hexdigest() != recorded.sha256:
                notes.append(
                    f"the plan file {path} changed since the run started; using the run's "
                    f"copy (pass --plan {path} to accept the changes)"
                )
        return recorded, notes, {}
    new = load_plan(plan_file)
    if new.repo_root.resolve() != recorded.repo_root.resolve():
        raise UsageError(f"--plan {plan_file}: its repository differs from the run's")
    old_ids = {t.id for t in recorded.plan.teams}
    added = [t.id for t in new.plan.teams if t.id not in old_ids]
    if added:
        raise UsageError(
            f"--plan {plan_file} adds teams ({', '.join(added)}) a resumed run cannot take; "
            "start a new run"
        )
    new_teams = {t.id: t for t in new.plan.teams}
    done = [t for t, s in teams.items() if s.status is TeamStatus.SUCCEEDED]
    changed = [
        t for t in done if t not in new_teams or not _same(recorded.plan.team(t), new_teams[t])
    ]
    if changed:
        raise UsageError(
            f"--plan {plan_file}: teams already done changed ({', '.join(changed)}); "
            "their id, task, deliverables and depends_on must stay as they were"
        )
    write_plan_copy(layout, run.run_id, new.text)
    fields = {"plan_text": new.text, "plan_sha256": new.sha256, "plan_path": str(new.path)}
    return new, [f"resuming with the new plan {new.path}"], fields


# -- reconciling ------------------------------------------------------------------------------


def _record(
    layout: StateLayout, run_id: str, team: str, n: int, f: dict[str, str]
) -> AttemptRecord:
    log_path = Path(f.get("log") or layout.log_file(run_id, team, n))
    status = Path(f.get("status_file") or layout.status_file(run_id, team, n))
    pid = int(f.get("pid") or 0)
    created = float(f["pid_created"]) if f.get("pid_created") else None
    if pid <= 0:
        written = read_status(status)
        if written and isinstance(written.get("supervisor_pid"), int):
            pid = written["supervisor_pid"]
        else:
            found = find_supervisor(status)
            if found is not None:
                pid, created = found
    return AttemptRecord(
        attempt=n,
        agent_id=f.get("agent_id", ""),
        pid=pid,
        create_time=created,
        log=log_path,
        status=status,
        offset=int(f.get("offset") or 0),
        started=float(f["started"]) if f.get("started") else None,
        session_id=f.get("session_id") or None,
        finished="exit_code" in f,
    )


async def _running(rec: AttemptRecord) -> bool:
    proc = await AgentProcess.attach(
        rec.pid, rec.log, rec.status, rec.offset, create_time=rec.create_time
    )
    return proc.running


async def _partial_edits(git: Git, worktree: str | None) -> list[str]:
    if not worktree or not await anyio.Path(worktree).is_dir():
        return []
    try:
        return await git.changed_paths(Path(worktree))
    except OrchestrateError:  # a worktree we cannot read: say nothing about it
        return []


async def reconcile(
    ctx: RunContext, *, retry_failed: bool, plan_fields: dict[str, str]
) -> StartState:
    """The resume's setup step (under the lease): each team's state, its recovery, cleanup."""
    store, run_id, plan, epoch = ctx.store, ctx.run_id, ctx.plan, ctx.epoch
    run = await store.get_run(run_id)
    teams = await store.get_teams(run_id)
    ctx.budget = Spending(plan, run.usage, effective_budget(plan.budget, run.meta))
    for tid, state in teams.items():
        ctx.budget.team_tokens[tid] = state.usage.tokens
        ctx.budget.team_usd[tid] = state.usage.cost_usd
    start = StartState()
    keep: set[int] = set()
    every_attempt = await store.attempts_of(run_id, {t: st.attempt for t, st in teams.items()})

    async def transition(
        tid: str, to: TeamStatus, attempt: int, reason: str, **fields: str
    ) -> None:
        await store.team_transition(
            run_id, tid, to, epoch=epoch, attempt=attempt, reason=reason, fields=fields
        )

    for team in plan.teams:
        tid = team.id
        st: TeamState | None = teams.get(tid)
        status, n = (st.status, st.attempt) if st else (TeamStatus.PENDING, 0)
        fields = st.fields if st else {}
        base = int(fields.get("attempt_base") or 0)
        attempts = every_attempt.get(tid, []) if n else []
        uncounted = sum(1 for a in attempts if a.attempt > base and a.fields.get("uncounted"))
        most = base + plan.retries(team) + 1 + uncounted
        result = TeamResult(tid, status, n, st.branch if st else None, st.reason if st else None)
        facts = TeamFacts(status, n, retry_failed=retry_failed)
        action = decide(facts)
        rec: AttemptRecord | None = None
        if action is Action.PROBE:  # the one fact decide needs from the machine
            mine = [a.fields for a in attempts if a.attempt == n]
            rec = _record(ctx.layout, run_id, tid, n, mine[0] if mine else fields)
            # An attempt on a host of the ray executor: that host knows whether it runs.
            remote = ctx.options.executor != "local" and bool((mine[0] if mine else {}).get("host"))
            found = rec.pid > 0 and (remote or rec.status.exists() or await _running(rec))
            action = decide(dataclasses.replace(facts, agent_found=found))
        step = STEPS[action]
        reason, extra = "resume --retry-failed", {}
        if action is Action.RETRY_FAILED:
            extra = {"attempt_base": str(n)}
        elif action is Action.RESTART_CRASHED:
            edits = await _partial_edits(ctx.git, fields.get("worktree"))
            reason = f"attempt {n} was cut short: its agent process is gone" + (
                f"; it left partial edits in {', '.join(edits)}" if edits else ""
            )
        elif action is Action.RESTART_CANCELLED:
            reason = f"attempt {n} was cancelled"
        if step.uncounted is not None:
            await store.update_attempt(run_id, tid, n, {"uncounted": step.uncounted}, epoch=epoch)
        if step.to is not None:
            await transition(tid, step.to, n + step.next_attempt, reason, **extra)
        session = fields.get("session_id")
        match action:
            case Action.KEEP:
                result.files = [p for p, h in (st.deliverables if st else {}).items() if h]
                last = [a.fields for a in attempts if a.attempt == n]
                # What the downstream prompts quote ("Their summary"), kept by teamrun.
                result.final_message = (last[0].get("final_message") if last else None) or None
                ctx.results[tid] = result
            case Action.LEAVE:
                ctx.results[tid] = result
            case Action.RETRY_FAILED:
                why = (st.reason if st else None) or TeamStatus.FAILED
                feedback = Feedback(attempt=n, reason=why) if n else None
                start.recoveries[tid] = Recovery(n + 1, n + 1 + plan.retries(team), None, feedback)
            case Action.ATTACH if rec is not None:
                keep.add(rec.pid)
                start.recoveries[tid] = Recovery(n, most, rec, session_id=rec.session_id)
            case Action.RESTART_CRASHED if rec is not None:
                feedback = Feedback(attempt=n, reason=reason)
                start.recoveries[tid] = Recovery(n + 1, most + 1, None, feedback, rec.session_id)
            case Action.GO_ON:
                feedback = Feedback(attempt=n - 1, reason=st.reason or "") if n > 1 and st else None
                start.recoveries[tid] = Recovery(n, most, None, feedback, session)
            case Action.AFTER_PAUSE:  # attempt n did not count (a usage limit)
                why = (st.reason if st else None) or "usage limit"
                feedback = Feedback(attempt=n, reason=why)
                start.recoveries[tid] = Recovery(n + 1, most, None, feedback, session)
            case Action.AWAIT_DECISION:  # its work is committed; the decision is read then
                start.recoveries[tid] = Recovery(n, most, None, None, session, awaiting=True)
            case Action.RESTART_CANCELLED:
                start.recoveries[tid] = Recovery(n + 1, most + 1, None, None, session)
        start.status[tid] = start_status(facts, action)
    if run.status is RunStatus.INTEGRATING:
        await store.run_transition(run_id, RunStatus.INTERRUPTED, epoch=epoch, reason="resumed")
    await store.run_transition(
        run_id,
        RunStatus.RUNNING,
        epoch=epoch,
        reason="resumed",
        fields={**plan_fields, **ctx.options.run_fields(), "resumed": "1"},
    )
    stopped = await stop_processes(run_id, keep_groups=keep, grace=ctx.options.kill_grace)
    if stopped:
        ctx.notify(Notice(time.time(), None, "cleanup", f"stopped {stopped} leftover process(es)"))
    await _reset_integration(ctx)
    attached = [t for t, r in start.recoveries.items() if r.attach is not None]
    ctx.notify(
        Notice(
            time.time(),
            None,
            "resumed",
            f"epoch {epoch}; {sum(1 for s in start.status.values() if s is TeamStatus.SUCCEEDED)} "
            f"team(s) done, {len(attached)} re-attached",
        )
    )
    return start


async def _reset_integration(ctx: RunContext) -> None:
    """An unfinished integration starts again from its beginning: its worktree back to base."""
    from orchestrator.run.integration.phase import INTEGRATION

    worktree = ctx.layout.worktree(ctx.run_id, INTEGRATION)
    if ctx.plan.isolation == "shared" or not worktree.is_dir():
        return
    await ctx.git.abort_merge(worktree)
    await ctx.git.reset_hard(worktree, ctx.base_commit)


# -- resume and cancel --------------------------------------------------------------------------


def _quiet(_: Notice) -> None:
    return None


async def resume_run(
    run_id: str | None,
    *,
    store: Store,
    layout: StateLayout,
    options: EngineOptions | None = None,
    notify: Notify | None = None,
    retry_failed: bool = False,
    plan_file: Path | None = None,
    on_started: Callable[[str], None] | None = None,
    budget_usd: float | None = None,
    budget_tokens: int | None = None,
) -> RunResult:
    """Resume ``run_id`` (default: the newest run) to its end; see the module docstring.

    ``budget_usd`` / ``budget_tokens`` raise the run's budget first (a run ``paused
    (budget)`` goes on; :func:`orchestrator.state.budgets.raise_budget`).

    ``on_started`` is called with the run id once the run is taken over and
    reconciled (a live board may follow it from there).
    """
    say = notify or _quiet
    options = options or EngineOptions()
    check_executor(options.executor)
    if options.executor == "local" and forkserver.enabled():
        forkserver.fork_server().warm()  # its imports go on while the store is read
    run_id = await store.resolve_run(run_id)
    run = await store.get_run(run_id)
    if run.status is RunStatus.SUCCEEDED:
        say(Notice(time.time(), None, run.status, f"run {run_id} already succeeded"))
        return RunResult(run_id=run_id, status=run.status, reason="already succeeded")
    teams = await store.get_teams(run_id)
    loaded, notes, fields = choose_plan(run, teams, layout, plan_file)
    if options.executor == "local":  # elsewhere the hosts look for them
        require_agents(loaded)
    if budget_usd is not None or budget_tokens is not None:
        raised = await raise_budget(
            store, run_id, loaded.plan.budget, usd=budget_usd, tokens=budget_tokens
        )
        limits = [f"${raised.usd:.2f}" if raised.usd is not None else "", ""]
        if raised.tokens is not None:
            limits[1] = f"{raised.tokens} tokens"
        say(
            Notice(time.time(), None, "budget", "raised to " + " and ".join(x for x in limits if x))
        )
    for note in notes:
        say(Notice(time.time(), None, "plan", note))
    await take_over_dead_lease(store, run_id)
    info = RunInfo(run_id, loaded, run.meta.get("base_ref", ""), run.meta.get("base_commit", ""))
    if not info.base_commit:
        raise UsageError(f"run {run_id} has no recorded base commit; it cannot be resumed")
    engine = Engine(
        info,
        store=store,
        layout=layout,
        git=Git(loaded.repo_root),
        options=options,
        notify=say,
        setup=functools.partial(reconcile, retry_failed=retry_failed, plan_fields=fields),
        on_started=on_started,
    )
    try:
        return await engine.run()
    except BaseExceptionGroup as group:
        error = first_error(group)
        await record_crash(store, run_id, error)
        raise error from group
    except Exception as exc:
        await record_crash(store, run_id, exc)
        raise


@dataclass(frozen=True)
class Cancelled:
    """What ``orchestrate cancel`` did."""

    run_id: str
    status: RunStatus
    """The run's status afterwards (``cancelled``, or ``succeeded`` if it had finished)."""
    stopped: int
    teams: list[str]


async def cancel_run(
    run_id: str | None,
    *,
    store: Store,
    grace: float = 5.0,
    wait: float = 10.0,
) -> Cancelled:
    """Cancel a run: mark it, stop its processes, mark its running teams (resumable)."""
    run_id = await store.resolve_run(run_id)
    run = await store.get_run(run_id)
    if run.status is RunStatus.SUCCEEDED:
        return Cancelled(run_id, run.status, 0, [])
    who = f"cancelled by {socket.gethostname()} pid {os.getpid()}"
    for _ in range(3):  # the epoch may move under us (a resume taking the lease)
        try:
            epoch = (await store.get_run(run_id)).epoch
            await store.run_transition(run_id, RunStatus.CANCELLED, epoch=epoch, reason=who)
            break
        except StaleEpochError:
            continue
    stopped = await _stop_recorded(store, run_id, grace)
    stopped += await stop_processes(run_id, grace=grace)
    marked = []
    for tid, st in (await store.get_teams(run_id)).items():
        if st.status not in TeamStatus.IN_FLIGHT:
            continue
        with contextlib.suppress(IllegalTransitionError, StaleEpochError):
            epoch = (await store.get_run(run_id)).epoch
            await store.team_transition(
                run_id, tid, TeamStatus.CANCELLED, epoch=epoch, attempt=st.attempt, reason=who
            )
            marked.append(tid)
    with anyio.move_on_after(wait):  # a live orchestrator notices and lets go of the lease
        while await live_holder(store, run_id):  # noqa: ASYNC110 (another process)
            await anyio.sleep(0.2)
    stopped += await stop_processes(run_id, grace=grace)
    return Cancelled(run_id, RunStatus.CANCELLED, stopped, marked)


async def _stop_recorded(store: Store, run_id: str, grace: float) -> int:
    """Terminate the process group of every recorded supervisor of the run still alive."""
    stopped = 0
    for st in (await store.get_teams(run_id)).values():
        f = st.fields
        pid = int(f.get("pid") or 0)
        if pid <= 0 or not f.get("status_file"):
            continue
        created = float(f["pid_created"]) if f.get("pid_created") else None
        proc = await AgentProcess.attach(
            pid, Path(f.get("log", "")), Path(f["status_file"]), 0, create_time=created
        )
        if proc.running:
            await proc.terminate(grace)
            stopped += 1
    return stopped
