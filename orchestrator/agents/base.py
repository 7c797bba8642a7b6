"""What every agent kind provides: its argv, how to read its output, how to judge the end.

An adapter is one small module per kind (``orchestrator/agents/<kind>.py``,
``-`` written ``_``) defining ``Adapter``, a subclass of :class:`AgentAdapter`:

- :meth:`AgentAdapter.argv` builds the command line from an :class:`AgentContext`
  (continuing ``ctx.resume_session_id`` where the CLI can);
- :meth:`AgentAdapter.parse` turns one output line into zero or more common
  :class:`AgentEvent` s (session id, messages, tool calls, usage, result, error);
- :meth:`AgentAdapter.judge` turns the process :class:`~orchestrator.agents.process.Outcome`
  and the events into a :class:`Verdict`.

The base class gives a plain-text ``parse`` and a ``judge`` that a JSON-speaking
CLI usually only needs to refine: it totals usage, keeps the last session id
and result, and fails on an error result even when the exit code is 0.
"""

from __future__ import annotations

import shlex
import shutil
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from orchestrator.agents.process import Outcome
from orchestrator.plan.models import AgentConfig, format_duration

EventType = Literal["session", "message", "tool", "usage", "result", "error", "text"]

_DISPLAY_MAX = 400
"""Characters of an event's text shown on one log line."""


@dataclass(frozen=True)
class AgentContext:
    """Everything an adapter needs to start one attempt of one team's agent."""

    config: AgentConfig
    kind: str
    team_id: str
    attempt: int
    agent_id: str
    workdir: Path
    prompt_file: Path
    prompt_text: str
    model: str | None = None
    """The model for this team (the team's ``model:`` over the agent's); None: the CLI's default."""
    resume_session_id: str | None = None
    """Continue this session of the agent's own (a retry); None: a fresh conversation."""
    env: Mapping[str, str] = field(default_factory=dict)
    """The environment the agent will get (for adapters whose argv depends on it)."""
    run_id: str | None = None
    max_budget_usd: float | None = None
    """A spending limit the CLI can enforce itself (Claude Code ``--max-budget-usd``)."""


@dataclass(frozen=True)
class AgentEvent:
    """One thing an agent reported, in terms common to every kind."""

    type: EventType
    text: str = ""
    session_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_tokens: int = 0
    cost_usd: float | None = None
    is_error: bool = False
    retryable: bool = False
    """A rate limit or an overload (429, 529, 5xx): retry later, with a longer backoff."""
    fatal: bool = False
    """An authentication or configuration error: retrying cannot help."""
    retry_after: float | None = None
    """Seconds the service asked us to wait, when it said."""

    def display(self) -> str:
        """One short human-readable line for logs and the board."""
        text = " ".join(self.text.split())
        if len(text) > _DISPLAY_MAX:
            text = text[: _DISPLAY_MAX - 1] + "…"
        if self.type == "text":
            return self.text
        if self.type == "session":
            return f"session {self.session_id or text}"
        if self.type == "usage":
            parts = [f"tokens in {self.input_tokens} out {self.output_tokens}"]
            if self.cache_tokens:
                parts.append(f"cache {self.cache_tokens}")
            if self.cost_usd is not None:
                parts.append(f"${self.cost_usd:.4f}")
            return "usage: " + ", ".join(parts)
        if self.type == "tool":
            return f"tool: {text}"
        if self.type == "result":
            return f"result{' (error)' if self.is_error else ''}: {text}"
        if self.type == "error":
            tag = " (retryable)" if self.retryable else " (fatal)" if self.fatal else ""
            return f"error{tag}: {text}"
        return text  # message


@dataclass(frozen=True)
class Verdict:
    """Whether an attempt succeeded as far as the agent is concerned, and what it reported.

    Deliverables and checks are judged afterwards by the engine; a successful
    verdict only says the agent finished its turn without error.
    """

    success: bool
    reason: str | None = None
    """Why it failed, as one line: ``exit code 2``, ``timed out after 30m``, the API error."""
    session_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_tokens: int = 0
    cost_usd: float | None = None
    result: str | None = None
    """The agent's final message, handed to downstream teams."""
    retryable: bool = False
    fatal: bool = False
    retry_after: float | None = None


def exit_reason(outcome: Outcome) -> str | None:
    """Why the process ended badly, as one line; None when it exited 0 in time."""
    if outcome.timed_out:
        return f"timed out after {format_duration(outcome.limit or outcome.duration)}"
    if outcome.stalled:
        return f"no output for {format_duration(outcome.limit or outcome.duration)}"
    if outcome.lost:
        return "the agent's supervisor vanished without an exit status"
    if outcome.signal is not None:
        return f"killed by signal {outcome.signal}"
    if outcome.exit_code is None:
        return "ended without an exit status"
    if outcome.exit_code == 127:
        return "exit code 127 (command not found)"
    if outcome.exit_code != 0:
        return f"exit code {outcome.exit_code}"
    return None


def summarize(outcome: Outcome, events: Sequence[AgentEvent]) -> Verdict:
    """The default judgement: the exit, then any error result or error event; usage totalled."""
    session_id = result = error = None
    result_error = retryable = fatal = False
    retry_after: float | None = None
    tokens_in = tokens_out = tokens_cache = 0
    cost: float | None = None
    for event in events:
        if event.session_id:
            session_id = event.session_id
        if event.type == "usage":
            tokens_in += event.input_tokens
            tokens_out += event.output_tokens
            tokens_cache += event.cache_tokens
            if event.cost_usd is not None:
                cost = (cost or 0.0) + event.cost_usd
        elif event.type == "result":
            result, result_error = event.text, event.is_error
        elif event.type == "error":
            error = event.text
        retryable = retryable or event.retryable
        fatal = fatal or event.fatal
        retry_after = event.retry_after if event.retry_after is not None else retry_after
    reason = exit_reason(outcome)
    if reason is None and result_error:
        reason = result or error or "the agent reported an error"
    if reason is not None and error and not (outcome.timed_out or outcome.stalled):
        reason = f"{reason}: {error}"
    return Verdict(
        success=reason is None,
        reason=reason,
        session_id=session_id,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cache_tokens=tokens_cache,
        cost_usd=cost,
        result=result,
        retryable=retryable and reason is not None,
        fatal=fatal and reason is not None,
        retry_after=retry_after,
    )


class AgentAdapter(ABC):
    """How to start one kind of agent CLI and read what it prints."""

    kind: ClassVar[str]
    default_command: ClassVar[str]
    """The executable when the agent's ``command:`` does not name one."""

    @abstractmethod
    def argv(self, ctx: AgentContext) -> list[str]:
        """The full command line of one attempt (the executable first), without a shell."""

    def env(self, ctx: AgentContext) -> dict[str, str]:
        """Variables this kind needs on top of the agent's environment (default: none)."""
        return {}

    prompt_on_stdin: ClassVar[bool] = False
    """The CLI reads its prompt from stdin (fed from the prompt file), never from argv."""

    def stdin(self, ctx: AgentContext) -> Path | None:
        """The file the agent reads as its stdin: the prompt file for a kind that reads its
        prompt there (:attr:`prompt_on_stdin`), else None (``/dev/null``).

        A prompt is never put on the command line, where every local user could read
        it in ``/proc/PID/cmdline``; each kind takes it from stdin or from its file.
        """
        return ctx.prompt_file if self.prompt_on_stdin else None

    def parse(self, line: str) -> list[AgentEvent]:
        """The events one output line carries. Default: a non-blank line is a ``text`` event."""
        return [AgentEvent(type="text", text=line)] if line.strip() else []

    def judge(self, outcome: Outcome, events: Sequence[AgentEvent]) -> Verdict:
        """Did the attempt succeed, as far as the agent is concerned? See :func:`summarize`."""
        return summarize(outcome, events)

    def base_argv(self, config: AgentConfig) -> list[str]:
        """The start of the command line: ``command:`` (a string is split like a shell would)
        or the kind's default executable. Adapters append their flags, then ``config.args``."""
        command = config.command
        words = shlex.split(command) if isinstance(command, str) else list(command or ())
        return words or [self.default_command]

    def executable(self, config: AgentConfig) -> str:
        """The program that will be run: the first word of ``command:``, or the kind's default."""
        try:
            return self.base_argv(config)[0]
        except ValueError:  # unbalanced quotes: report the command as it is
            return str(config.command)

    def missing_executable(self, config: AgentConfig, cwd: Path | None = None) -> str | None:
        """A one-line problem when the executable cannot be found; None when it can.

        A relative path with a ``/`` is looked up from ``cwd`` (it is only known
        for sure inside the team's worktree, so it is not checked without one).
        """
        program = self.executable(config)
        if "/" in program:
            path = Path(program)
            if not path.is_absolute():
                if cwd is None:
                    return None
                path = cwd / path
            if path.is_file():
                return None
            return f"agent {self.kind!r}: executable {program!r} does not exist"
        if shutil.which(program) is None:
            return f"agent {self.kind!r}: executable {program!r} not found on PATH"
        return None

    def model_args(self, ctx: AgentContext, flag: str = "--model") -> list[str]:
        """``[flag, model]`` when a model is set, else nothing."""
        model = ctx.model or ctx.config.model
        return [flag, model] if model else []
