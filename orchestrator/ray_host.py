"""The host actor: one per node of a Ray cluster, running that node's attempts.

The ray executor (:mod:`orchestrator.run.ray_executor`) finds or creates one
detached :class:`HostActor` per node (:func:`orchestrator.run.ray_cluster.host_actor`)
and drives each attempt through three calls, so that the scheduler's hooks
(:class:`~orchestrator.run.executor.AttemptHooks`) run in order on its side::

    start = await host.begin.remote(req)     # worktree + prompt ready    -> AttemptStart
    #  (scheduler: hooks.starting -> `running`)
    end = await host.follow.remote(req)      # agent started, followed    -> AgentEnd
    #  (scheduler: hooks.ended -> usage, `verifying`)
    out = await host.finish.remote(req)      # verified, committed, pushed -> AttemptOutcome

The host owns the node's workspace, a folder on the node's disk::

    <root>/repos/<hash of the remote>/      a bare clone of the shared git remote
    <root>/runs/<run>/worktrees/<team>/     team worktrees (branch orchestrate/<run>/<team>)
    <root>/runs/<run>/attempts/<team>.<n>.{prompt.md,log,status,pid,json}

``begin`` fetches the run's base and the upstream teams' branches from the
remote, makes the worktree (upstream merged in) and writes the prompt; the
plan comes from the run's record in Redis. ``follow`` starts the agent under
a supervisor and streams its lines into Redis. ``finish`` checks deliverables
and runs the checks on the node, commits and pushes the team branch.

Every call is idempotent by key ``run/team/attempt``: asked again, a phase that
is under way is awaited, one that is done returns its recorded result, and an
agent is never started twice. The attempt's record (``.json``) is on the
node's disk before the agent starts and after each phase: a host actor that
Ray restarted (its worker killed) re-adopts the agents it had started (still
running under their supervisors) when the executor calls again.

Ray kills an actor worker's direct children when the actor is killed, so the
supervisor is started through a short-lived spawner (:mod:`orchestrator.ray_spawn`,
a bare interpreter) that starts it in a session of its own, records its pid
and exits: the supervisor and its agent outlive the host actor.

This module does not import Ray (Ray imports it on the node).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import anyio

from orchestrator.agents import adapter_for
from orchestrator.agents.base import AgentEvent, Verdict
from orchestrator.agents.process import AgentProcess, Launch, Outcome
from orchestrator.agents.prompts import (
    Feedback,
    PromptInput,
    load_role,
    render_feedback,
    render_prompt,
)
from orchestrator.agents.runner import AgentJob, AgentRun, prepare, run_secrets, usage_of
from orchestrator.envs import work_env
from orchestrator.errors import (
    AgentError,
    GitError,
    OrchestrateError,
    StaleEpochError,
    StoreError,
)
from orchestrator.gitops import Git
from orchestrator.gitops import _run as run_git
from orchestrator.plan.load import LoadedPlan
from orchestrator.plan.models import Plan
from orchestrator.ray_spawn import spawn_detached
from orchestrator.redact import Redactor
from orchestrator.run.attempt import checks_json
from orchestrator.run.executor import (
    AgentEnd,
    AttemptOutcome,
    AttemptStart,
    CheckOutcome,
)
from orchestrator.run.ray_records import (
    HostBusy,
    HostRequest,
    NodeRecord,
    agent_runs,
    beside,
    load_record,
    read_head,
    save_record,
)
from orchestrator.verify import CheckResult, find_deliverables, run_checks

T = TypeVar("T")

ROOT_ENV = "ORCHESTRATE_HOST_ROOT"
"""The workspace root on a node (set it in the environment of ``ray start``)."""
DEFAULT_ROOT = "~/.orchestrate/host"
FINAL_MESSAGE_CHARS = 4000
STORE_RETRY_LIMIT = 600.0
"""Seconds a host keeps retrying a Redis write (Redis away, or the run's lease being taken
over) while its agent runs; the agent and its log on the node's disk are never given up."""
_DEFAULT_COMMANDS = {
    "claude-code": "claude",
    "codex": "codex",
    "aider": "aider",
    "gemini": "gemini",
    "opencode": "opencode",
}


def resolve_root(root: str | None) -> Path:
    return Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT).expanduser().resolve()


def agent_programs(plan: Plan | None = None) -> dict[str, str | None]:
    """Agent kind (and each of the plan's agents) -> its program on this node's PATH, or None."""
    found: dict[str, str | None] = {k: shutil.which(c) for k, c in _DEFAULT_COMMANDS.items()}
    if plan is not None:
        for name in plan.agents:
            program = _program(plan, name)
            found[name] = shutil.which(program) if program else None
    return found


def _program(plan: Plan, name: str) -> str | None:
    config = plan.agent_config(name)
    command = config.command
    if command is None:
        return _DEFAULT_COMMANDS.get(config.kind or "")
    words = command.split() if isinstance(command, str) else list(command)
    return words[0] if words else None


class HostActor:
    """A node's host: its workspace and the attempts running there (see the module doc)."""

    def __init__(self, node_id: str, name: str, root: str | None = None) -> None:
        self.node_id = node_id
        self.name = name
        self.root = resolve_root(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.started = time.time()
        self._tasks: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._epochs: dict[str, int] = {}
        self._runs: dict[str, AgentRun] = {}
        self._launches: dict[str, Launch] = {}
        self._plans: dict[str, LoadedPlan] = {}
        self._adopted = sorted(self._unfinished())

    # -- what the node has ---------------------------------------------------------------

    def _unfinished(self) -> dict[str, NodeRecord]:
        """Attempts started here (by this or an earlier incarnation) and not finished."""
        found: dict[str, NodeRecord] = {}
        for path in self.root.glob("runs/*/attempts/*.json"):
            rec = load_record(path)
            if rec is not None and rec.outcome is None and rec.pid is not None:
                found[rec.key] = rec
        return found

    async def ping(self) -> str:
        return self.name

    async def info(self) -> dict[str, Any]:
        """What ``orchestrate hosts`` shows: the attempts here and the agent CLIs found."""
        running = [key for key, rec in self._unfinished().items() if agent_runs(rec)]
        return {
            "name": self.name,
            "node_id": self.node_id,
            "root": str(self.root),
            "pid": os.getpid(),
            "since": self.started,
            "running": sorted(running),
            "adopted": self._adopted,
            "programs": agent_programs(),
        }

    async def programs(self, plan: Plan) -> dict[str, str | None]:
        return agent_programs(plan)

    # -- the three phases ----------------------------------------------------------------

    async def begin(self, req: HostRequest) -> AttemptStart | AttemptOutcome:
        """Prepare the attempt (worktree, prompt); its files. Refused when the node is full
        (``HostBusy``); an attempt that cannot begin returns an outcome with ``setup_error``."""
        return await self._once(req, "begin", lambda: self._begin(req))

    async def follow(self, req: HostRequest) -> AgentEnd:
        """Start the agent (unless started before: then re-adopt it) and follow it to its end."""
        return await self._once(req, "follow", lambda: self._follow(req))

    async def finish(self, req: HostRequest) -> AttemptOutcome:
        """Verify the ended attempt on the node; commit and push the team branch if it passed."""
        return await self._once(req, "finish", lambda: self._finish(req))

    async def cancel(self, run_id: str, team: str, attempt: int, grace: float = 5.0) -> bool:
        """Stop that attempt's agent (its process group); False if none runs here."""
        rec = load_record(self._attempts_dir(run_id) / f"{team}.{attempt}.json")
        if rec is None or rec.pid is None or not agent_runs(rec):
            return False
        proc = await AgentProcess.attach(
            rec.pid, Path(rec.log), Path(rec.status), rec.offset, create_time=rec.create_time
        )
        await proc.terminate(grace)
        return True

    async def _once(
        self, req: HostRequest, phase: str, make: Callable[[], Coroutine[Any, Any, T]]
    ) -> T:
        """Run ``make()`` once per (attempt, phase); concurrent and later calls share it.
        Shielded: the phase goes on when the caller goes away (the orchestrator died)."""
        key = req.key
        self._epochs[key] = max(req.request.epoch, self._epochs.get(key, 0))
        try:
            await self._load_plan(req)
        except StoreError as exc:
            if phase == "begin":
                return self._setup_failed(  # type: ignore[return-value]
                    req, f"Redis not reachable from host {self.name}: {exc}"
                )
            raise
        task = self._tasks.get((key, phase))
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.ensure_future(make())
            self._tasks[(key, phase)] = task
        return await asyncio.shield(task)

    # -- paths and records ---------------------------------------------------------------

    def _attempts_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id / "attempts"

    def _record_path(self, req: HostRequest) -> Path:
        r = req.request
        return self._attempts_dir(r.run_id) / f"{r.team_id}.{r.attempt}.json"

    def _record(self, req: HostRequest) -> NodeRecord | None:
        return load_record(self._record_path(req))

    def _save(self, req: HostRequest, rec: NodeRecord) -> None:
        save_record(self._record_path(req), rec)

    def _start_of(self, rec: NodeRecord) -> AttemptStart:
        return AttemptStart(
            agent_id=rec.agent_id,
            branch=rec.branch,
            worktree=Path(rec.worktree),
            log=Path(rec.log),
            status=Path(rec.status),
            prompt_file=Path(rec.prompt_file),
            session_id=rec.session_id,
            host=self.name,
        )

    # -- begin ---------------------------------------------------------------------------

    async def _begin(self, req: HostRequest) -> AttemptStart | AttemptOutcome:
        rec = self._record(req)
        if rec is not None:
            return self._start_of(rec)
        r = req.request
        if r.attach is not None:  # a resume: the agent another host incarnation started
            a = r.attach
            rec = NodeRecord(
                key=req.key,
                agent_id=a.agent_id,
                branch=req.branch,
                worktree=str(self.root / "runs" / r.run_id / "worktrees" / r.team_id),
                prompt_file="",
                log=str(a.log),
                status=str(a.status),
                session_id=a.session_id,
                started=a.started,
                pid=a.pid,
                create_time=a.create_time,
                offset=a.offset,
            )
            self._save(req, rec)
            return self._start_of(rec)
        if self._busy() >= req.slots:
            raise HostBusy(f"host {self.name}: all {req.slots} agent slots are taken")
        try:
            return await self._prepare(req)
        except StoreError as exc:
            return self._setup_failed(req, f"Redis not reachable from host {self.name}: {exc}")
        except OrchestrateError as exc:
            return self._setup_failed(req, f"host {self.name}: {exc}")

    def _busy(self) -> int:
        """Slots taken: agents running here (their supervisor alive), attempts beginning."""
        return sum(1 for rec in self._unfinished().values() if agent_runs(rec)) + sum(
            1 for (_, phase), t in self._tasks.items() if phase == "begin" and not t.done()
        )

    def _setup_failed(self, req: HostRequest, error: str) -> AttemptOutcome:
        r = req.request
        return AttemptOutcome(
            run_id=r.run_id,
            team_id=r.team_id,
            attempt=r.attempt,
            host=self.name,
            agent_id=req.agent_id,
            setup_error=error,
            reason=error,
        )

    async def _load_plan(self, req: HostRequest) -> LoadedPlan:
        """The run's plan, from its record in Redis (once per run)."""
        from orchestrator.paths import StateLayout
        from orchestrator.state.runs import plan_of_run
        from orchestrator.state.store import open_store

        run_id = req.request.run_id
        loaded = self._plans.get(run_id)
        if loaded is None:
            async with open_store(req.settings, StateLayout(self.root / "state")) as store:
                meta = (await store.get_run(run_id)).meta
            loaded = self._plans[run_id] = plan_of_run(meta, run_id=run_id)
        return loaded

    async def _prepare(self, req: HostRequest) -> AttemptStart:
        r = req.request
        loaded = await self._load_plan(req)
        plan = loaded.plan
        team = plan.team(r.team_id)
        worktree = self.root / "runs" / r.run_id / "worktrees" / r.team_id
        if r.prepare or not worktree.is_dir():  # a retry may land on a node new to the team
            await self._worktree(req, worktree)
        base = self._attempts_dir(r.run_id) / f"{r.team_id}.{r.attempt}"
        config = plan.agent_config(plan.agent_name(team))
        resume = r.session_id if (r.feedback is not None and config.resume_session) else None
        inp = PromptInput(
            run_id=r.run_id,
            plan=plan,
            team=team,
            attempt=r.attempt,
            max_attempts=r.max_attempts,
            workdir=worktree,
            role=load_role(team.role, worktree),
            upstream=r.upstream,
            feedback=r.feedback,
        )
        plan_file = _on_node(loaded.path, loaded.repo_root, worktree)
        prompt = render_feedback(inp) if resume else render_prompt(inp, plan_file=plan_file)
        job = AgentJob(
            config=config,
            team_id=r.team_id,
            attempt=r.attempt,
            agent_id=req.agent_id,
            workdir=worktree,
            prompt=prompt,
            prompt_file=beside(base, ".prompt.md"),
            log=beside(base, ".log"),
            status=beside(base, ".status"),
            env=work_env(allow=plan.env_allow, layers=[plan.env, config.env, team.env]),
            orchestrate={
                "ORCHESTRATE_RUN": r.run_id,
                "ORCHESTRATE_TEAM": r.team_id,
                "ORCHESTRATE_AGENT_ID": req.agent_id,
                "ORCHESTRATE_ATTEMPT": str(r.attempt),
                "ORCHESTRATE_PROMPT_FILE": str(beside(base, ".prompt.md")),
                "ORCHESTRATE_HOST": self.name,
            },
            secrets=run_secrets(req.secrets),  # the node's own secret values, the password
            run_id=r.run_id,
            model=team.model,
            resume_session_id=resume,
            max_budget_usd=team.budget.usd if team.budget else None,
        )
        base.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        prepared = prepare(job)  # writes the prompt file, redacted
        self._launches[req.key] = prepared.launch
        self._runs[req.key] = AgentRun(prepared.adapter)
        rec = NodeRecord(
            key=req.key,
            agent_id=req.agent_id,
            branch=req.branch,
            worktree=str(worktree),
            prompt_file=str(job.prompt_file),
            log=str(job.log),
            status=str(job.status),
            session_id=resume,
        )
        self._save(req, rec)
        return self._start_of(rec)

    async def _worktree(self, req: HostRequest, worktree: Path) -> None:
        """The team's worktree from the run's base, the upstream branches merged in."""
        repo = await self._clone(req.remote)
        refs = [req.base_branch, *req.upstream_branches]
        specs = [f"+refs/heads/{r}:refs/remotes/origin/{r}" for r in refs]
        await run_git(["fetch", "--quiet", "origin", *specs], cwd=repo)
        git = Git(repo)
        await git.add_worktree(worktree, req.branch, req.request.base_commit)
        todo = await git.not_merged(worktree, [f"origin/{b}" for b in req.upstream_branches])
        if todo:
            result = await git.merge(
                worktree, todo, message=f"{req.request.team_id}: merge upstream {{branch}}"
            )
            if not result.ok:
                raise GitError(str(result))

    async def _clone(self, remote: str) -> Path:
        repo = self.root / "repos" / hashlib.sha256(remote.encode()).hexdigest()[:16]
        if not (repo / "HEAD").exists():
            repo.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = repo.with_name(f"{repo.name}.tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            await run_git(["clone", "--bare", "--quiet", remote, str(tmp)], cwd=repo.parent)
            with contextlib.suppress(OSError):
                tmp.rename(repo)  # another attempt cloned it meanwhile: keep that one
            shutil.rmtree(tmp, ignore_errors=True)
        return repo

    # -- follow --------------------------------------------------------------------------

    async def _follow(self, req: HostRequest) -> AgentEnd:
        from orchestrator.paths import StateLayout
        from orchestrator.state.store import open_store

        rec = self._record(req)
        if rec is None:
            raise AgentError(f"host {self.name}: attempt {req.key} was not begun here")
        if rec.end is not None:
            return _agent_end(rec, self._verdict(req, rec))
        r = req.request
        async with open_store(req.settings, StateLayout(self.root / "state")) as store:
            adopted = rec.pid is not None or self._recover_pid(rec)
            run = self._runs.get(req.key)
            if run is None or adopted:
                run = self._replay(req, rec)
            if rec.pid is None:
                launch = self._launches.get(req.key)
                if launch is None:  # restarted between begin and follow: prepare again
                    await self._prepare(req)
                    launch = self._launches[req.key]
                    run = self._runs[req.key]
                rec.started = time.time()
                rec.pid, rec.create_time = await anyio.to_thread.run_sync(
                    spawn_detached, launch, Path(rec.log).with_suffix(".pid")
                )
                self._save(req, rec)
            await self._write(
                req,
                lambda: store.update_attempt(
                    r.run_id,
                    r.team_id,
                    r.attempt,
                    {
                        "host": self.name,
                        "node_id": self.node_id,
                        "pid": str(rec.pid),
                        "pid_created": "" if rec.create_time is None else repr(rec.create_time),
                    },
                    epoch=self._epochs[req.key],
                ),
            )
            outcome = await self._follow_to_end(req, store, rec, run)
        rec.end = {
            "outcome": asdict(outcome),
            "events": [asdict(e) for e in run.events],
            "tail": list(run.tail),
            "adopted": adopted,
        }
        self._save(req, rec)
        return _agent_end(rec, self._verdict(req, rec))

    def _recover_pid(self, rec: NodeRecord) -> bool:
        """A record saved before the spawner answered: its pid file, if it got that far."""
        with contextlib.suppress(OSError, ValueError, KeyError):
            data = json.loads(Path(rec.log).with_suffix(".pid").read_text())
            rec.pid, rec.create_time = int(data["pid"]), data.get("create_time")
            return True
        return False

    def _adapter(self, req: HostRequest) -> Any:
        plan = self._plan(req)
        team = plan.team(req.request.team_id)
        return adapter_for(plan.agent_config(plan.agent_name(team)).kind or "")

    def _plan(self, req: HostRequest) -> Plan:
        return self._plans[req.request.run_id].plan

    def _replay(self, req: HostRequest, rec: NodeRecord) -> AgentRun:
        """An :class:`AgentRun` fed with what the agent printed before ``rec.offset``."""
        run = AgentRun(self._adapter(req))
        run.feed(read_head(Path(rec.log), rec.offset))
        self._runs[req.key] = run
        return run

    async def _follow_to_end(
        self, req: HostRequest, store: Any, rec: NodeRecord, run: AgentRun
    ) -> Outcome:
        r = req.request
        proc = await AgentProcess.attach(
            rec.pid or 0, Path(rec.log), Path(rec.status), rec.offset, create_time=rec.create_time
        )
        plan = self._plan(req)
        team = plan.team(r.team_id)

        async def on_lines(shown: list[str], session: str | None) -> None:
            await self._write(req, lambda: store.append_log(r.run_id, r.team_id, r.attempt, shown))
            rec.offset = proc.offset
            fields = {"offset": str(proc.offset)}
            if session:
                fields["session_id"] = session
            await self._write(
                req,
                lambda: store.update_attempt(
                    r.run_id, r.team_id, r.attempt, fields, epoch=self._epochs[req.key]
                ),
            )

        elapsed = time.time() - (rec.started or time.time())
        try:
            return await run.follow(
                proc,
                timeout=max(1.0, plan.timeout(team) - elapsed),
                stall_timeout=plan.stall_timeout(team),
                on_lines=on_lines,
                grace=req.kill_grace,
            )
        finally:
            proc.detach()  # a follow cut short (the actor stopping) leaves the agent running
            self._save(req, rec)

    async def _write(self, req: HostRequest, write: Callable[[], Awaitable[T]]) -> T | None:
        """A Redis write for an attempt, retried while Redis is away or the run's lease is
        being taken over (a resumed orchestrator sends its new epoch when it calls again)."""
        deadline = time.monotonic() + STORE_RETRY_LIMIT
        delay = 0.2
        while True:
            try:
                return await write()
            except StaleEpochError:
                if time.monotonic() > deadline:
                    return None
            except StoreError:
                if time.monotonic() > deadline:
                    raise
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _verdict(self, req: HostRequest, rec: NodeRecord) -> tuple[Outcome, Verdict, list[str]]:
        end = rec.end or {}
        outcome = Outcome(**end["outcome"])
        events = [AgentEvent(**e) for e in end.get("events", ())]
        return outcome, self._adapter(req).judge(outcome, events), list(end.get("tail", ()))

    # -- finish --------------------------------------------------------------------------

    async def _finish(self, req: HostRequest) -> AttemptOutcome:
        rec = self._record(req)
        if rec is None or rec.end is None:
            raise AgentError(f"host {self.name}: attempt {req.key} has not ended here")
        if rec.outcome is not None:
            return AttemptOutcome.model_validate_json(rec.outcome)
        r = req.request
        plan = self._plan(req)
        team = plan.team(r.team_id)
        config = plan.agent_config(plan.agent_name(team))
        outcome, verdict, tail = self._verdict(req, rec)
        worktree = Path(rec.worktree)
        report = find_deliverables(worktree, team.deliverables)
        checks: list[CheckResult] = []
        if verdict.success and team.checks:
            checks = await run_checks(
                worktree,
                team.checks,
                time_limit=plan.defaults.check_timeout,
                env=work_env(allow=plan.env_allow, layers=[plan.env, config.env, team.env]),
            )
        failed = [c for c in checks if not c.passed]
        ok = verdict.success and report.ok and not failed
        reason = "" if ok else _summarize(report.problems, failed, verdict)
        final = verdict.result
        if final is None:
            final = "\n".join(line for line in tail[-10:] if line.strip()) or None
        kept = _kept(final, req.secrets)
        # On the attempt, as a local attempt records them: the checks, why it did not pass,
        # the final message (before the commit: downstream prompts quote it).
        redactor = Redactor(run_secrets(req.secrets))
        fields = (
            {"checks": checks_json(checks, redactor)} if verdict.success and team.checks else {}
        )
        if reason:
            fields["reason"] = reason
        if ok and kept:
            fields["final_message"] = kept
        commit: str | None = None
        from orchestrator.paths import StateLayout
        from orchestrator.state.store import open_store

        async with open_store(req.settings, StateLayout(self.root / "state")) as store:
            if fields:
                await self._write(
                    req,
                    lambda: store.update_attempt(
                        r.run_id, r.team_id, r.attempt, fields, epoch=self._epochs[req.key]
                    ),
                )
        if ok:
            try:
                commit = await self._commit_and_push(req, rec)
            except GitError as exc:
                ok, reason = False, f"host {self.name}: {exc}"
        result = AttemptOutcome(
            run_id=r.run_id,
            team_id=r.team_id,
            attempt=r.attempt,
            host=self.name,
            agent_id=rec.agent_id,
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            timed_out=outcome.timed_out,
            stalled=outcome.stalled,
            lost=outcome.lost,
            success=verdict.success,
            ok=ok,
            reason=reason,
            fatal=verdict.fatal,
            retryable=verdict.retryable,
            retry_after=verdict.retry_after,
            deliverables=dict(report.found),
            checks=[CheckOutcome.of(c) for c in checks],
            usage=usage_of(verdict),
            session_id=verdict.session_id,
            final_message=kept,
            commit=commit,
            feedback=None
            if ok
            else Feedback(
                attempt=r.attempt,
                reason=reason,
                missing=report.problems,
                failed_checks=failed,
                timed_out=outcome.timed_out,
                stalled=outcome.stalled,
                timeout=outcome.limit,
                exit_code=outcome.exit_code,
                agent_error=verdict.reason if not verdict.success else None,
                log_tail="\n".join(tail[-15:]) if not verdict.success else None,
            ),
        )
        rec.outcome = result.model_dump_json()
        self._save(req, rec)
        return result

    async def _commit_and_push(self, req: HostRequest, rec: NodeRecord) -> str:
        r = req.request
        git = Git(await self._clone(req.remote))
        worktree = Path(rec.worktree)
        message = (
            f"orchestrate: team {r.team_id}\n\nRun: {r.run_id}\nAgent: {rec.agent_id}\n"
            f"Attempt: {r.attempt}\nHost: {self.name}\n"
        )
        commit = await git.commit_all(worktree, message) or await git.head(worktree)
        await run_git(
            ["push", "--quiet", "--force", "origin", f"{commit}:refs/heads/{req.branch}"],
            cwd=worktree,
        )
        return commit


# -- helpers --------------------------------------------------------------------------------


def _on_node(plan_path: Path, repo_root: Path, worktree: Path) -> Path | None:
    """Where the plan file is in the node's worktree (a plan kept in the repository)."""
    try:
        return worktree / plan_path.relative_to(repo_root)
    except ValueError:
        return None


def _summarize(problems: Any, failed: list[CheckResult], verdict: Verdict) -> str:
    parts: list[str] = []
    if not verdict.success and verdict.reason:
        parts.append(verdict.reason)
    if problems:
        parts.append("missing " + ", ".join(p.split(":", 1)[0] for p in problems))
    parts += [c.describe() for c in failed]
    return "; ".join(parts) or "the attempt did not pass"


def _kept(text: str | None, secrets: tuple[str, ...]) -> str | None:
    text = (text or "").strip()
    if not text:
        return None
    text = Redactor.from_env(extra=secrets).redact(text)
    if len(text) > FINAL_MESSAGE_CHARS:
        text = text[: FINAL_MESSAGE_CHARS - 1].rstrip() + "…"
    return text


def _agent_end(rec: NodeRecord, judged: tuple[Outcome, Verdict, list[str]]) -> AgentEnd:
    outcome, verdict, _ = judged
    return AgentEnd(
        ok=outcome.ok,
        exit_code=outcome.exit_code,
        reason=verdict.reason,
        session_id=verdict.session_id,
        usage=usage_of(verdict),
    )
