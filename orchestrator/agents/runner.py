"""One way to run an agent once: prompt file, environment, argv, supervisor, parsing, judging.

A team's attempt, the integration's resolver and fixer, and ``orchestrate
import --agent`` all start their agent through here, so what an agent gets is
decided in one place:

- its prompt, redacted (:func:`orchestrator.agents.prompts.write_prompt`), in a file
  of its own that the agent reads on stdin or by path (the adapter says which:
  :meth:`~orchestrator.agents.base.AgentAdapter.stdin`), never on its command
  line;
- its environment: :attr:`AgentJob.env` (built by :func:`orchestrator.envs.work_env`,
  never an inherited ``ORCHESTRATE_*``), the ``ORCHESTRATE_*`` layer its caller
  names (run, team, attempt, prompt file), then what the adapter adds;
- its argv from the adapter, under the supervisor (:class:`AgentProcess`);
- its output parsed into events (:class:`AgentRun`), the last lines kept,
  the end judged into a :class:`~orchestrator.agents.base.Verdict` and usage.

::

    prepared = prepare(job)
    run = AgentRun(prepared.adapter)
    async with await AgentProcess.start(prepared.launch) as proc:
        outcome = await run.follow(proc, timeout=600, stall_timeout=None, on_lines=store_lines)
    verdict = run.verdict(outcome)
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.agents import adapter_for
from orchestrator.agents.base import AgentAdapter, AgentContext, AgentEvent, Verdict
from orchestrator.agents.limits import LimitWatcher
from orchestrator.agents.process import DEFAULT_GRACE, AgentProcess, Launch, Outcome
from orchestrator.agents.prompts import write_prompt
from orchestrator.plan.models import AgentConfig
from orchestrator.redact import Redactor, secret_values
from orchestrator.state.models import Usage

TAIL_LINES = 40
"""Lines of an agent's output kept (the retry prompt, a plain-text agent's final message)."""
KEPT_EVENTS = ("session", "usage", "result", "error")
"""Events kept in memory for the verdict (messages and text only go to the log)."""

OnShown = Callable[[list[str], str | None], Awaitable[None]]
"""Called with each batch of displayed lines and the session id they announced (if any)."""


class LiveAgents:
    """The supervised processes one orchestrator follows now (agents, the test suite).

    Stopping a run terminates each of them with a grace period; a further
    Ctrl-C or SIGTERM meanwhile calls :meth:`kill_all`, which SIGKILLs every
    group at once (and any that registers afterwards), so the orchestrator
    never exits leaving one behind.
    """

    def __init__(self) -> None:
        self._procs: set[AgentProcess] = set()
        self.killing = False

    def __len__(self) -> int:
        return len(self._procs)

    @contextlib.contextmanager
    def track(self, proc: AgentProcess) -> Iterator[AgentProcess]:
        """Count ``proc`` as live for the block (wrap its ``async with``: it stays
        counted until closing it has ended its group)."""
        self._procs.add(proc)
        if self.killing:
            proc.kill()
        try:
            yield proc
        finally:
            self._procs.discard(proc)

    def kill_all(self) -> None:
        """SIGKILL every live group now, and every one that registers from now on."""
        self.killing = True
        for proc in list(self._procs):
            proc.kill()


def _tracked(
    live: LiveAgents | None, proc: AgentProcess
) -> contextlib.AbstractContextManager[object]:
    return live.track(proc) if live is not None else contextlib.nullcontext()


@dataclass(frozen=True)
class AgentJob:
    """One run of one agent: what to start, where, with which prompt and environment."""

    config: AgentConfig
    team_id: str
    """The team (or the integration, or ``import``) the agent works for."""
    attempt: int
    agent_id: str
    workdir: Path
    prompt: str
    """The prompt as rendered; written redacted to :attr:`prompt_file`."""
    prompt_file: Path
    log: Path
    status: Path
    env: Mapping[str, str]
    """The work environment (:func:`orchestrator.envs.work_env`): no ``ORCHESTRATE_*``."""
    orchestrate: Mapping[str, str] = field(default_factory=dict)
    """The ``ORCHESTRATE_*`` variables this agent is told (run, team, attempt, ...)."""
    secrets: tuple[str, ...] = ()
    """Values to redact beyond the agent's secret-looking variables: :func:`run_secrets`
    (orchestrate's own secret-looking variables, the Redis password)."""
    run_id: str | None = None
    model: str | None = None
    resume_session_id: str | None = None
    max_budget_usd: float | None = None


@dataclass(frozen=True)
class Prepared:
    """A job made ready: its adapter, the prompt as written, what to launch."""

    adapter: AgentAdapter
    prompt: str
    launch: Launch

    @property
    def argv(self) -> list[str]:
        return list(self.launch.argv)


def run_secrets(extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The values of orchestrate's own secret-looking variables plus ``extra`` (the Redis
    password): what a run's :attr:`AgentJob.secrets` holds. Read once per run: the
    environment is not scanned again for every agent."""
    return tuple(secret_values(extra=extra))


def redactor_for(env: Mapping[str, str], secrets: Sequence[str] = ()) -> Redactor:
    """The redactor of whatever one agent's work may show: the agent's secret-looking
    variables plus ``secrets`` (:func:`run_secrets`: orchestrate's own)."""
    return Redactor.from_env(env, extra=secrets)


def prepare(job: AgentJob) -> Prepared:
    """Write the prompt file (redacted) and build the agent's environment and launch."""
    config = job.config
    kind = config.kind or ""
    adapter = adapter_for(kind)
    env = {**job.env, **job.orchestrate}
    prompt = write_prompt(job.prompt_file, job.prompt, redactor_for(env, job.secrets))
    ctx = AgentContext(
        config=config,
        kind=kind,
        team_id=job.team_id,
        attempt=job.attempt,
        agent_id=job.agent_id,
        workdir=job.workdir,
        prompt_file=job.prompt_file,
        prompt_text=prompt,
        model=job.model or config.model,
        resume_session_id=job.resume_session_id,
        env=env,
        run_id=job.run_id,
        max_budget_usd=job.max_budget_usd,
    )
    argv = adapter.argv(ctx)
    env.update(adapter.env(ctx))
    launch = Launch(
        argv=argv,
        cwd=job.workdir,
        env=env,
        log=job.log,
        status=job.status,
        secrets=job.secrets,
        stdin=adapter.stdin(ctx),
    )
    return Prepared(adapter=adapter, prompt=prompt, launch=launch)


class AgentRun:
    """Reads one agent's output: events for the verdict, the last lines shown."""

    def __init__(self, adapter: AgentAdapter, *, tail_lines: int = TAIL_LINES) -> None:
        self.adapter = adapter
        self.events: list[AgentEvent] = []
        self.tail: deque[str] = deque(maxlen=tail_lines)
        self.limits = LimitWatcher()
        """A usage limit the agent reported (:mod:`orchestrator.agents.limits`)."""

    def feed(self, lines: Sequence[str]) -> tuple[list[str], str | None]:
        """Parse ``lines``: the lines to show (log stream) and a session id they announced."""
        shown: list[str] = []
        session: str | None = None
        for line in lines:
            self.limits.feed(line)
            for event in self.adapter.parse(line):
                shown.append(event.display())
                if event.type in KEPT_EVENTS:
                    self.events.append(event)
                if event.type == "session" and event.session_id:
                    session = event.session_id
        self.tail.extend(shown)
        return shown, session

    async def follow(
        self,
        proc: AgentProcess,
        *,
        timeout: float,  # noqa: ASYNC109 (the agent's limit)
        stall_timeout: float | None,
        on_lines: OnShown | None = None,
        grace: float = DEFAULT_GRACE,
    ) -> Outcome:
        """Follow ``proc`` to its end, each batch parsed and handed to ``on_lines``."""

        async def lines(batch: list[str]) -> None:
            shown, session = self.feed(batch)
            if on_lines is not None:
                await on_lines(shown, session)

        return await proc.run(
            timeout=timeout, stall_timeout=stall_timeout, on_lines=lines, grace=grace
        )

    def verdict(self, outcome: Outcome) -> Verdict:
        """The adapter's judgement of the ended attempt."""
        return self.adapter.judge(outcome, self.events)


def usage_of(verdict: Verdict) -> Usage:
    """The tokens and cost a verdict reports."""
    return Usage(
        input_tokens=verdict.input_tokens,
        output_tokens=verdict.output_tokens,
        cost_usd=verdict.cost_usd or 0.0,
    )


@dataclass(frozen=True)
class Ran:
    """How one run of an agent ended (:func:`run_agent`)."""

    outcome: Outcome
    verdict: Verdict
    tail: list[str]
    events: list[AgentEvent]

    @property
    def usage(self) -> Usage:
        return usage_of(self.verdict)


async def run_agent(
    job: AgentJob,
    *,
    timeout: float,  # noqa: ASYNC109 (the agent's limit)
    stall_timeout: float | None,
    grace: float = DEFAULT_GRACE,
    on_started: Callable[[AgentProcess], Awaitable[None]] | None = None,
    on_lines: OnShown | None = None,
    tail_lines: int = TAIL_LINES,
    live: LiveAgents | None = None,
) -> Ran:
    """Start ``job``'s agent, follow it to its end, judge it (raises :class:`AgentError`
    when it cannot start). Closing kills what is left of it; ``live`` counts it meanwhile."""
    prepared = prepare(job)
    run = AgentRun(prepared.adapter, tail_lines=tail_lines)
    proc = await AgentProcess.start(prepared.launch)
    with _tracked(live, proc):
        async with proc:
            if on_started is not None:
                await on_started(proc)
            outcome = await run.follow(
                proc, timeout=timeout, stall_timeout=stall_timeout, on_lines=on_lines, grace=grace
            )
    return Ran(
        outcome=outcome, verdict=run.verdict(outcome), tail=list(run.tail), events=run.events
    )
