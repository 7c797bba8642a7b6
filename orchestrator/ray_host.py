"""The host actor: one per node of a Ray cluster, running that node's attempts.

The ray executor (:mod:`orchestrator.ray_executor`) finds or creates one
detached :class:`HostActor` per node (:func:`orchestrator.ray_cluster.host_actor`)
and asks it to run attempts::

    outcome = await host.run_attempt.remote(spec, slots)    # HostOutcome

The host owns the node's workspace, a folder on the node's disk::

    <root>/repos/<hash of the remote>/      a bare clone of the shared git remote
    <root>/runs/<run>/worktrees/<team>/     the team worktrees (branch orchestrate/<run>/<team>)
    <root>/runs/<run>/attempts/<team>.<n>.{prompt.md,log,status,json}

An attempt: fetch the run's base and the upstream teams' branches from the
remote, make the team's worktree and merge them in, write the prompt, start
the agent under a supervisor, stream its lines into Redis, judge it (the
agent's verdict, deliverables, checks), commit and push the team branch, and
return a :class:`HostOutcome`. The scheduler records the transitions.

Idempotent by key ``run/team/attempt``: a call for an attempt that is running
attaches to it; for one that ended, returns its recorded outcome; nothing is
ever started twice. The attempt's record (``.json``) is on the node's disk
before the agent starts and is updated with the supervisor's pid and, at the
end, the outcome: a host actor restarted by Ray (its worker killed) finds its
attempts there and re-adopts them when the executor calls again.

Ray kills an actor worker's direct children when the actor is killed, so the
supervisor is started through a short-lived spawner process (``python -m
orchestrator.ray_host``) that starts it in a session of its own, writes its pid
and exits: the supervisor and its agent outlive the host actor.

This module does not import Ray: Ray imports it on the node.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio

from orchestrator.agentproc import AgentProcess, Launch, Outcome
from orchestrator.agents import adapter_for
from orchestrator.agents.base import AgentContext, AgentEvent
from orchestrator.envs import agent_env
from orchestrator.errors import AgentError, GitError, OrchestrateError, StaleEpochError, StoreError
from orchestrator.gitops import Git
from orchestrator.gitops import _run as run_git
from orchestrator.plan import Plan
from orchestrator.settings import Settings
from orchestrator.verify import CheckResult, find_deliverables, run_checks

T = TypeVar("T")

ROOT_ENV = "ORCHESTRATE_HOST_ROOT"
"""The workspace root on a node (set it in the environment of ``ray start``)."""
DEFAULT_ROOT = "~/.orchestrate/host"
TAIL_LINES = 40
STORE_RETRY_LIMIT = 600.0
"""Seconds a host keeps retrying Redis writes (unreachable, or an old lease epoch) while
its agent runs; the agent and its log on the node's disk are never given up."""
_KEPT_EVENTS = ("session", "usage", "result", "error")
_DEFAULT_COMMANDS = {
    "claude-code": "claude",
    "codex": "codex",
    "aider": "aider",
    "gemini": "gemini",
    "opencode": "opencode",
}


@dataclass(frozen=True)
class AttemptSpec:
    """Attempt ``attempt`` of team ``team`` of run ``run_id``: what a host needs to run it."""

    run_id: str
    team: str
    attempt: int
    epoch: int
    agent_id: str
    settings: Settings
    """The store: a TCP Redis every node reaches (its password never reaches the agent)."""
    remote: str
    """The git URL the node fetches from and pushes to."""
    base_branch: str
    base_commit: str
    branch: str
    upstream: tuple[str, ...]
    """Upstream teams' branches to merge into a fresh worktree, in order."""
    plan: Plan
    prompt: str
    timeout: float
    stall_timeout: float | None
    commit_message: str
    resume_session: str | None = None
    kill_grace: float = 5.0
    secrets: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return attempt_key(self.run_id, self.team, self.attempt)


def attempt_key(run_id: str, team: str, attempt: int) -> str:
    return f"{run_id}/{team}/{attempt}"


@dataclass(frozen=True)
class HostOutcome:
    """How an attempt ended on its host (everything the scheduler needs to judge it)."""

    host: str
    key: str
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    stalled: bool = False
    lost: bool = False
    limit: float | None = None
    duration: float = 0.0
    events: tuple[AgentEvent, ...] = ()
    tail: tuple[str, ...] = ()
    found: dict[str, str | None] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    checks: tuple[CheckResult, ...] = ()
    commit: str | None = None
    error: str | None = None
    """The attempt could not run or be finished on this node (git, the agent's program,
    Redis): the node's own words."""
    busy: bool = False
    """Every agent slot of the node is taken: nothing was started, try elsewhere or later."""
    host_lost: bool = False
    """The node went away during the attempt (``error`` says ``host NAME lost``)."""
    adopted: bool = False
    """The host followed an agent a previous incarnation of itself (or a previous
    orchestrator) had started."""
    worktree: str = ""

    def outcome(self) -> Outcome:
        return Outcome(
            exit_code=self.exit_code,
            signal=self.signal,
            timed_out=self.timed_out,
            stalled=self.stalled,
            duration=self.duration,
            lost=self.lost,
            limit=self.limit,
        )


@dataclass
class _Record:
    """An attempt's record on the node's disk (``<key>.json``)."""

    key: str
    agent_id: str
    log: str
    status: str
    worktree: str
    started: float
    pid: int | None = None
    create_time: float | None = None
    outcome: dict[str, Any] | None = None


def resolve_root(root: str | None) -> Path:
    return Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT).expanduser().resolve()


def agent_programs(plan: Plan | None = None) -> dict[str, str | None]:
    """Agent kind (or plan agent) -> the program found on this node's PATH, or None."""
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
    if isinstance(command, str):
        return command.split()[0] if command.split() else None
    return command[0] if command else None


class HostActor:
    """A node's host: its workspace and the attempts running there (see the module doc)."""

    def __init__(self, node_id: str, name: str, root: str | None = None) -> None:
        self.node_id = node_id
        self.name = name
        self.root = resolve_root(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.started = time.time()
        self._tasks: dict[str, Any] = {}
        self._epochs: dict[str, int] = {}
        self._slots: int | None = None
        self._adopted = self._scan()

    # -- what the node has ---------------------------------------------------------------

    def _scan(self) -> dict[str, _Record]:
        """Attempts a previous incarnation started and did not finish (their records)."""
        found: dict[str, _Record] = {}
        for path in self.root.glob("runs/*/attempts/*.json"):
            rec = _load_record(path)
            if rec is not None and rec.outcome is None:
                found[rec.key] = rec
        return found

    async def ping(self) -> str:
        return self.name

    async def info(self) -> dict[str, Any]:
        """What ``orchestrate hosts`` shows: the attempts here and the agent CLIs found."""
        running = []
        for key, task in self._tasks.items():
            if not task.done():
                running.append(key)
        for key in self._adopted:
            if key not in running and key not in self._tasks:
                running.append(key)
        return {
            "name": self.name,
            "node_id": self.node_id,
            "root": str(self.root),
            "pid": os.getpid(),
            "since": self.started,
            "running": sorted(running),
            "adopted": sorted(self._adopted),
            "programs": agent_programs(),
        }

    async def programs(self, plan: Plan) -> dict[str, str | None]:
        return agent_programs(plan)

    # -- attempts ------------------------------------------------------------------------

    def _running(self) -> int:
        live = sum(1 for t in self._tasks.values() if not t.done())
        return live + sum(1 for k in self._adopted if k not in self._tasks)

    async def run_attempt(self, spec: AttemptSpec, slots: int) -> HostOutcome:
        """Run (or attach to, or return the recorded end of) attempt ``spec.key``."""
        import asyncio

        key = spec.key
        self._epochs[key] = max(spec.epoch, self._epochs.get(key, 0))
        task = self._tasks.get(key)
        if task is None:
            rec = self._adopted.get(key) or _load_record(self._record_path(spec))
            if rec is not None and rec.outcome is not None:
                return _outcome_from(rec.outcome)
            if rec is None and self._running() >= slots:
                return HostOutcome(host=self.name, key=key, busy=True)
            task = asyncio.ensure_future(self._attempt(spec, rec))
            self._tasks[key] = task
        # Shielded: the attempt goes on if this call is cancelled (its caller died).
        return await asyncio.shield(task)

    async def cancel(self, run_id: str, team: str, attempt: int, grace: float = 5.0) -> bool:
        """Stop that attempt's agent (its process group); False if it is not known here."""
        key = attempt_key(run_id, team, attempt)
        rec = self._adopted.get(key)
        if rec is None:
            for path in self.root.glob(f"runs/{run_id}/attempts/{team}.{attempt}.json"):
                rec = _load_record(path)
        if rec is None or rec.pid is None:
            return False
        proc = await AgentProcess.attach(
            rec.pid, Path(rec.log), Path(rec.status), 0, create_time=rec.create_time
        )
        await proc.terminate(grace)
        return True

    def _paths(self, spec: AttemptSpec) -> tuple[Path, Path]:
        run = self.root / "runs" / spec.run_id
        return run / "worktrees" / spec.team, run / "attempts"

    def _record_path(self, spec: AttemptSpec) -> Path:
        return self._paths(spec)[1] / f"{spec.team}.{spec.attempt}.json"

    async def _attempt(self, spec: AttemptSpec, rec: _Record | None) -> HostOutcome:
        from orchestrator.paths import StateLayout
        from orchestrator.store import open_store

        worktree, attempts = self._paths(spec)
        base = attempts / f"{spec.team}.{spec.attempt}"
        adopted = rec is not None
        try:
            async with open_store(spec.settings, StateLayout(self.root / "state")) as store:
                if rec is None:
                    rec = await self._start(spec, store, worktree, base)
                elif rec.pid is None:
                    rec = self._recover_pid(rec, base)
                outcome = await self._follow(spec, store, rec, adopted)
        except StoreError as exc:
            outcome = HostOutcome(
                host=self.name,
                key=spec.key,
                error=f"Redis not reachable from host {self.name}: {exc}",
                worktree=str(worktree),
            )
        except (GitError, AgentError) as exc:
            outcome = HostOutcome(host=self.name, key=spec.key, error=f"host {self.name}: {exc}")
        if rec is not None:
            rec.outcome = _outcome_json(outcome)
            _save_record(self._record_path(spec), rec)
        self._adopted.pop(spec.key, None)
        return outcome

    async def _start(self, spec: AttemptSpec, store: Any, worktree: Path, base: Path) -> _Record:
        """Prepare the worktree, write the prompt and the record, start the supervisor."""
        await self._prepare(spec, worktree)
        plan = spec.plan
        team = plan.team(spec.team)
        config = plan.agent_config(plan.agent_name(team))
        adapter = adapter_for(config.kind or "")
        base.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        prompt_file = base.with_suffix(".prompt.md")
        prompt_file.write_text(spec.prompt)
        env = agent_env(
            allow=plan.env_allow,
            layers=[plan.env, config.env, team.env],
            orchestrate={
                "ORCHESTRATE_RUN": spec.run_id,
                "ORCHESTRATE_TEAM": spec.team,
                "ORCHESTRATE_AGENT_ID": spec.agent_id,
                "ORCHESTRATE_ATTEMPT": str(spec.attempt),
                "ORCHESTRATE_PROMPT_FILE": str(prompt_file),
                "ORCHESTRATE_HOST": self.name,
            },
        )
        ctx = AgentContext(
            config=config,
            kind=config.kind or "",
            team_id=spec.team,
            attempt=spec.attempt,
            agent_id=spec.agent_id,
            workdir=worktree,
            prompt_file=prompt_file,
            prompt_text=spec.prompt,
            model=team.model or config.model,
            resume_session_id=spec.resume_session,
            env=env,
            run_id=spec.run_id,
            max_budget_usd=team.budget.usd if team.budget else None,
        )
        argv = adapter.argv(ctx)
        env.update(adapter.env(ctx))
        log, status = base.with_suffix(".log"), base.with_suffix(".status")
        rec = _Record(
            key=spec.key,
            agent_id=spec.agent_id,
            log=str(log),
            status=str(status),
            worktree=str(worktree),
            started=time.time(),
        )
        _save_record(self._record_path(spec), rec)
        launch = Launch(
            argv=argv, cwd=worktree, env=env, log=log, status=status, secrets=spec.secrets
        )
        rec.pid, rec.create_time = await anyio.to_thread.run_sync(
            spawn_detached, launch, base.with_suffix(".pid")
        )
        _save_record(self._record_path(spec), rec)
        await self._store_write(
            spec,
            lambda: store.update_attempt(
                spec.run_id,
                spec.team,
                spec.attempt,
                {
                    "host": self.name,
                    "pid": str(rec.pid),
                    "pid_created": "" if rec.create_time is None else repr(rec.create_time),
                    "log": rec.log,
                    "status_file": rec.status,
                    "worktree": rec.worktree,
                },
                epoch=self._epochs[spec.key],
            ),
        )
        return rec

    def _recover_pid(self, rec: _Record, base: Path) -> _Record:
        """A record written before the spawn finished: the spawner's pid file, if any."""
        with contextlib.suppress(OSError, ValueError, KeyError):
            data = json.loads(base.with_suffix(".pid").read_text())
            rec.pid, rec.create_time = int(data["pid"]), data.get("create_time")
        return rec

    async def _prepare(self, spec: AttemptSpec, worktree: Path) -> None:
        """The team's worktree from the run's base, the upstream branches merged in."""
        repo = await self._clone(spec.remote)
        refs = [spec.base_branch, *spec.upstream]
        await run_git(
            [
                "fetch",
                "--quiet",
                "origin",
                *[f"+refs/heads/{r}:refs/remotes/origin/{r}" for r in refs],
            ],
            cwd=repo,
        )
        git = Git(repo)
        fresh = await git.add_worktree(worktree, spec.branch, spec.base_commit)
        if spec.upstream and fresh:
            result = await git.merge(
                worktree,
                [f"origin/{b}" for b in spec.upstream],
                message=f"{spec.team}: merge upstream {{branch}}",
            )
            if not result.ok:
                raise GitError(str(result))

    async def _clone(self, remote: str) -> Path:
        repo = self.root / "repos" / hashlib.sha256(remote.encode()).hexdigest()[:16]
        if not (repo / "HEAD").exists():
            repo.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = repo.with_name(repo.name + f".tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            await run_git(["clone", "--bare", "--quiet", remote, str(tmp)], cwd=repo.parent)
            with contextlib.suppress(OSError):
                tmp.rename(repo)  # another attempt cloned it meanwhile: keep that one
            shutil.rmtree(tmp, ignore_errors=True)
        return repo

    async def _store_write(self, spec: AttemptSpec, write: Callable[[], Awaitable[T]]) -> T | None:
        """A Redis write for an attempt, retried while Redis is away or the run's lease is
        being taken over (a resumed orchestrator sends its new epoch by calling again)."""
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

    async def _follow(
        self, spec: AttemptSpec, store: Any, rec: _Record, adopted: bool
    ) -> HostOutcome:
        """Follow the supervisor to its end (lines into Redis), then judge and push."""
        plan = spec.plan
        team = plan.team(spec.team)
        adapter = adapter_for(plan.agent_config(plan.agent_name(team)).kind or "")
        events: list[AgentEvent] = []
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        offset = 0
        if adopted:
            attempts = await store.get_attempts(spec.run_id, spec.team)
            for a in attempts:
                if a.attempt == spec.attempt and (a.fields.get("offset") or "").isdigit():
                    offset = int(a.fields["offset"])
            for line in _read_head(Path(rec.log), offset):
                for event in adapter.parse(line):
                    tail.append(event.display())
                    if event.type in _KEPT_EVENTS:
                        events.append(event)
        if rec.pid is None:
            raise AgentError(f"the agent of {spec.key} was never started on host {self.name}")
        proc = await AgentProcess.attach(
            rec.pid, Path(rec.log), Path(rec.status), offset, create_time=rec.create_time
        )

        async def on_lines(lines: list[str]) -> None:
            shown: list[str] = []
            session: str | None = None
            for line in lines:
                for event in adapter.parse(line):
                    shown.append(event.display())
                    if event.type in _KEPT_EVENTS:
                        events.append(event)
                    if event.type == "session" and event.session_id:
                        session = event.session_id
            tail.extend(shown)
            await self._store_write(
                spec, lambda: store.append_log(spec.run_id, spec.team, spec.attempt, shown)
            )
            fields = {"offset": str(proc.offset)}
            if session:
                fields["session_id"] = session
            await self._store_write(
                spec,
                lambda: store.update_attempt(
                    spec.run_id, spec.team, spec.attempt, fields, epoch=self._epochs[spec.key]
                ),
            )

        elapsed = time.time() - rec.started
        try:
            outcome = await proc.run(
                timeout=max(1.0, spec.timeout - elapsed),
                stall_timeout=spec.stall_timeout,
                on_lines=on_lines,
                grace=spec.kill_grace,
            )
        finally:
            proc.detach()  # a follow cut short (the actor stopping) leaves the agent running
        return await self._judge(spec, rec, outcome, events, list(tail), adopted)

    async def _judge(
        self,
        spec: AttemptSpec,
        rec: _Record,
        outcome: Outcome,
        events: Sequence[AgentEvent],
        tail: list[str],
        adopted: bool,
    ) -> HostOutcome:
        plan = spec.plan
        team = plan.team(spec.team)
        adapter = adapter_for(plan.agent_config(plan.agent_name(team)).kind or "")
        worktree = Path(rec.worktree)
        verdict = adapter.judge(outcome, events)
        report = find_deliverables(worktree, team.deliverables)
        checks: list[CheckResult] = []
        if verdict.success and team.checks:
            checks = await run_checks(worktree, team.checks, time_limit=plan.defaults.check_timeout)
        commit: str | None = None
        error: str | None = None
        if verdict.success and report.ok and all(c.passed for c in checks):
            git = Git(await self._clone(spec.remote))
            try:
                commit = await git.commit_all(worktree, spec.commit_message)
                if commit is None:
                    commit = await git.head(worktree)
                await run_git(
                    ["push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{spec.branch}"],
                    cwd=worktree,
                )
            except GitError as exc:
                error = f"host {self.name}: {exc}"
                commit = None
        return HostOutcome(
            host=self.name,
            key=spec.key,
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            timed_out=outcome.timed_out,
            stalled=outcome.stalled,
            lost=outcome.lost,
            limit=outcome.limit,
            duration=outcome.duration,
            events=tuple(events),
            tail=tuple(tail),
            found=dict(report.found),
            problems=tuple(report.problems),
            checks=tuple(checks),
            commit=commit,
            error=error,
            adopted=adopted,
            worktree=str(worktree),
        )


# -- the attempt records ------------------------------------------------------------------


def _save_record(path: Path, rec: _Record) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(rec)))
    tmp.replace(path)


def _load_record(path: Path) -> _Record | None:
    try:
        return _Record(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _outcome_json(outcome: HostOutcome) -> dict[str, Any]:
    data = asdict(outcome)
    data["events"] = [asdict(e) for e in outcome.events]
    data["checks"] = [asdict(c) for c in outcome.checks]
    return data


def _outcome_from(data: Mapping[str, Any]) -> HostOutcome:
    fields = dict(data)
    fields["events"] = tuple(AgentEvent(**e) for e in fields.get("events", ()))
    fields["checks"] = tuple(CheckResult(**c) for c in fields.get("checks", ()))
    fields["tail"] = tuple(fields.get("tail", ()))
    fields["problems"] = tuple(fields.get("problems", ()))
    return HostOutcome(**fields)


def _read_head(log: Path, offset: int) -> list[str]:
    try:
        with log.open("rb") as fh:
            data = fh.read(offset)
    except OSError:
        return []
    return [line.removesuffix("\r") for line in data.decode("utf-8", "replace").split("\n") if line]


# -- starting a supervisor that outlives the host actor ---------------------------------


def spawn_detached(launch: Launch, pid_file: Path) -> tuple[int, float | None]:
    """Start ``launch`` under a supervisor that is not our child; its (pid, start time).

    A short-lived spawner (``python -m orchestrator.ray_host``) starts the
    supervisor in its own session, writes its pid to ``pid_file`` (write +
    rename) and exits: the supervisor is re-parented, so Ray's killing of an
    actor worker's children never reaches it. The launch (secrets included)
    goes to the spawner on its stdin, never argv or environment.
    """
    payload = json.dumps(
        {
            "argv": list(launch.argv),
            "cwd": str(launch.cwd),
            "env": dict(launch.env),
            "log": str(launch.log),
            "status": str(launch.status),
            "secrets": list(launch.secrets),
            "pid_file": str(pid_file),
        }
    ).encode()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator.ray_host"],
            input=payload,
            capture_output=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AgentError(f"cannot start the agent's supervisor: {exc}") from exc
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise AgentError(said[-1] if said else f"the spawner failed (exit {done.returncode})")
    data = json.loads(done.stdout)
    return int(data["pid"]), data.get("create_time")


def _spawn_main() -> None:
    """The spawner: read a launch on stdin, start its supervisor, print and record its pid."""
    data = json.loads(sys.stdin.buffer.read())
    launch = Launch(
        argv=data["argv"],
        cwd=Path(data["cwd"]),
        env=data["env"],
        log=Path(data["log"]),
        status=Path(data["status"]),
        secrets=tuple(data["secrets"]),
    )
    try:
        proc = AgentProcess._start_sync(launch)
    except OrchestrateError as exc:
        sys.stderr.write(f"{exc}\n")
        sys.stderr.flush()
        os._exit(1)
    out = json.dumps({"pid": proc.pid, "create_time": proc.create_time})
    pid_file = Path(data["pid_file"])
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(out)
    tmp.replace(pid_file)
    sys.stdout.write(out)
    sys.stdout.flush()
    os._exit(0)  # do not wait for the supervisor: it is re-parented and runs on


if __name__ == "__main__":
    _spawn_main()
