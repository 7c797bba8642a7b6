"""Where a team's attempt runs: the executor interface between the scheduler and the work.

The scheduler (:mod:`orchestrator.run.engine` and the deciding part of
:mod:`orchestrator.run.teamrun`) decides *when* an attempt runs and what its end
means (retry, fail, succeed); it is the only writer of team transitions, each
fenced by the run's lease epoch. An :class:`Executor` does the attempt: the
team's worktree (upstream branches merged), the prompt, the agent under its
supervisor, its output into the team's log stream, the verification
(deliverables, checks) and, when it passed, the commit. It answers with an
:class:`AttemptOutcome`.

::

    request = AttemptRequest(run_id=..., team_id="db", attempt=2, epoch=lease.epoch, ...)
    outcome = await executor.run_attempt(request, hooks)    # hooks: the scheduler's side
    if outcome.ok: ...                                       # the scheduler writes `succeeded`

Requests and outcomes are pydantic models: they go over a wire as JSON
(``model_dump_json`` / ``model_validate_json``) or pickled.

What every executor must do (a remote one, e.g. on a Ray cluster, included)
--------------------------------------------------------------------------

- **Share nothing with the scheduler but Redis and git.** The plan comes from
  the run's record (``plan_text`` in the run's meta: :func:`orchestrator.state.runs.plan_of_run`),
  the base and the upstream teams' work from their branches, the request's
  fields from the request. Nothing is read from the scheduler's memory or disk.
- **Be idempotent per key** ``(run, team, attempt)`` (:attr:`AttemptRequest.key`):
  asking for a key that is already running attaches to it and returns its
  outcome; it never starts a second agent. A request with :attr:`~AttemptRequest.attach`
  (a resume after the orchestrator crashed) follows that agent from the recorded
  log offset instead of starting one.
- **Write only attempt records and log lines**, fenced by the request's
  ``epoch``: ``Store.update_attempt`` (pid and its start time, log offset,
  session id, checks, reason, final message) and ``Store.append_log``. Never a
  team transition: those go through the :class:`AttemptHooks`, awaited in
  order on the scheduler's side:

  1. :meth:`AttemptHooks.starting` with the attempt's files and agent id,
     **before** the agent starts (the scheduler writes ``running``: a resume
     must know what to look for);
  2. :meth:`AttemptHooks.attached` instead, when following an agent started
     before;
  3. :meth:`AttemptHooks.ended` once the agent ended and before verifying
     (the scheduler records usage and writes ``verifying``; it may stop the
     attempt there, when the run was cancelled);
  4. :meth:`AttemptHooks.leave_running` when the attempt is being cancelled:
     True means detach (the agent goes on; another orchestrator follows it),
     False means kill its process group.

  A remote executor drives the hooks from the scheduler's process (the
  driver) as the host reports each step.
- **Give agents the host's environment**, never the scheduler's: the plan's
  ``env`` on top, ``ORCHESTRATE_*`` removed, prompts redacted and delivered on
  stdin or by file (:mod:`orchestrator.agents.runner`), supervisors in sessions of
  their own that outlive the executor.
- **Report, never decide**: the outcome says what happened (:attr:`AttemptOutcome.ok`
  and why not); retrying, failing and budgets are the scheduler's.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.agents.prompts import Feedback, UpstreamResult
from orchestrator.errors import UsageError
from orchestrator.state.models import Usage

if TYPE_CHECKING:
    from orchestrator.run.runtypes import RunContext
    from orchestrator.verify import CheckResult

EXECUTORS = ("local", "ray")
"""The executors ``--executor`` may name (``local``: this machine, the default; ``ray``: the
nodes of a Ray cluster, :mod:`orchestrator.run.ray_executor`)."""

AttemptKey = tuple[str, str, int]
"""``(run, team, attempt)``: what makes two requests the same attempt."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AttemptRecord(_Model):
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


class AttemptRequest(_Model):
    """Run attempt :attr:`attempt` of team :attr:`team_id` of run :attr:`run_id`."""

    run_id: str
    team_id: str
    attempt: int
    epoch: int
    """The scheduler's lease epoch: every write the executor makes is fenced by it."""
    max_attempts: int
    base_commit: str
    prepare: bool = True
    """Set up the worktree first (create it, merge the upstream branches not merged yet)."""
    feedback: Feedback | None = None
    """What went wrong in the attempt before (the retry prompt)."""
    session_id: str | None = None
    """The agent's session so far: a retry continues it where the agent kind allows."""
    upstream: list[UpstreamResult] = Field(default_factory=list)
    """What the upstream teams delivered (quoted in the prompt)."""
    attach: AttemptRecord | None = None
    """Follow this already started agent instead of starting one (a resume)."""

    @property
    def key(self) -> AttemptKey:
        return (self.run_id, self.team_id, self.attempt)


class AttemptStart(_Model):
    """An attempt about to start its agent (:meth:`AttemptHooks.starting`)."""

    agent_id: str
    branch: str
    worktree: Path
    log: Path
    status: Path
    prompt_file: Path
    session_id: str | None = None
    """The session the agent continues (a retry), if any."""
    host: str = Field(default_factory=socket.gethostname)


class AgentEnd(_Model):
    """How the agent of an attempt ended, before verification (:meth:`AttemptHooks.ended`)."""

    ok: bool
    """The process exited 0 in time (not killed, not lost)."""
    exit_code: int | None
    reason: str | None
    """The agent's verdict's reason (an exit code, a timeout, the API error)."""
    session_id: str | None = None
    usage: Usage = Field(default_factory=Usage)
    count_usage: bool = True
    """False when a crashed orchestrator had counted this attempt's usage already."""


class CheckOutcome(_Model):
    """One check's result (the report shows these; ``output_tail`` feeds the retry prompt)."""

    command: str
    passed: bool
    exit_code: int | None
    duration: float
    timed_out: bool = False

    @classmethod
    def of(cls, check: CheckResult) -> CheckOutcome:
        """The outcome of a check as :func:`orchestrator.verify.run_check` returned it."""
        return cls(
            command=check.command,
            passed=check.passed,
            exit_code=check.exit_code,
            duration=round(check.duration, 3),
            timed_out=check.timed_out,
        )


class AttemptOutcome(_Model):
    """What an attempt did: the agent's end, the verification, the commit."""

    run_id: str
    team_id: str
    attempt: int
    host: str = Field(default_factory=socket.gethostname)
    agent_id: str = ""
    setup_error: str | None = None
    """The attempt could not begin (worktree, upstream merge conflict): the team fails."""
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    stalled: bool = False
    lost: bool = False
    success: bool = False
    """The agent's own verdict (before deliverables and checks)."""
    ok: bool = False
    """The attempt passed: verdict, deliverables and checks; committed."""
    reason: str = ""
    """Why it did not pass (empty when it did)."""
    fatal: bool = False
    retryable: bool = False
    retry_after: float | None = None
    limit_resets_at: float | None = None
    """The agent ran into a usage limit lifting then (epoch s): a pause, not a failure."""
    limit_message: str | None = None
    """What the agent said about the limit (one line)."""
    deliverables: dict[str, str | None] = Field(default_factory=dict)
    """Each file found -> its sha256; each unmet deliverable -> None."""
    checks: list[CheckOutcome] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    session_id: str | None = None
    final_message: str | None = None
    """The agent's summary, redacted and capped (quoted in downstream prompts)."""
    commit: str | None = None
    """The team branch's commit holding the attempt's work (when ``ok``)."""
    feedback: Feedback | None = None
    """What the next attempt's prompt says went wrong (when not ``ok``)."""

    @property
    def key(self) -> AttemptKey:
        return (self.run_id, self.team_id, self.attempt)

    @property
    def files(self) -> list[str]:
        """The deliverable files found."""
        return [p for p, digest in self.deliverables.items() if digest is not None]


class AttemptHooks(Protocol):
    """The scheduler's side of an attempt: the transitions only it may write."""

    async def starting(self, start: AttemptStart) -> None:
        """The agent is about to start (write ``running``)."""

    async def attached(self, record: AttemptRecord, running: bool) -> None:
        """An agent started before is followed again (``running``: it has not ended yet)."""

    async def ended(self, end: AgentEnd) -> None:
        """The agent ended; verification follows (record usage, write ``verifying``)."""

    def leave_running(self) -> bool:
        """Being cancelled: leave the agent running (True) or kill it (False)?"""


class Executor(Protocol):
    """Runs attempts (see the module docstring for what an implementation must do)."""

    name: str
    """``local``, ``ray``, ...: what ``--executor`` chose."""

    async def run_attempt(self, request: AttemptRequest, hooks: AttemptHooks) -> AttemptOutcome:
        """Run (or attach to) the attempt ``request.key`` and return its outcome."""
        ...

    async def aclose(self) -> None:
        """Release what the executor holds for the run (safe twice); agents are not stopped."""
        ...


def check_executor(name: str) -> None:
    """Refuse an executor name nobody provides (a :class:`UsageError`, exit 2)."""
    if name not in EXECUTORS:
        raise UsageError(f"unknown executor {name!r} (known: {', '.join(EXECUTORS)})")


async def open_executor(name: str, ctx: RunContext) -> Executor:
    """The executor ``name`` for the run of ``ctx`` (the scheduler never knows which)."""
    check_executor(name)
    if name == "local":
        from orchestrator.run.local_executor import LocalExecutor

        return await LocalExecutor.for_run(ctx)
    if name == "ray":
        from orchestrator.run.ray_executor import RayExecutor

        return await RayExecutor.for_run(ctx)
    raise UsageError(f"unknown executor {name!r} (known: {', '.join(EXECUTORS)})")
