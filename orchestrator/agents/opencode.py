"""The ``opencode`` kind: the OpenCode CLI, ``opencode run``.

Command line (checked against OpenCode 1.18.33)::

    opencode run --format json --dir WORKTREE --auto [-m PROVIDER/MODEL]
                 [--session SESSION] [ARGS...]  < PROMPT_FILE

with the prompt on stdin (``run`` reads a piped stdin as its message; never
the command line) and ``PWD`` set to the worktree: OpenCode takes its project
folder from ``$PWD`` rather than from its real working directory, so an
inherited ``PWD`` would make it write into the wrong tree (``--dir`` pins it
too). ``--auto`` approves every permission that is not explicitly denied.

Each line is ``{type, timestamp, sessionID, part}``: ``step_start``,
``tool_use`` (``part.tool``, ``part.state.input``), ``text`` (``part.text``),
``step_finish`` (``part.tokens`` {input, output, reasoning, cache {read,
write}}, ``part.cost``) once per model step, and ``error`` (``error.name``,
``error.data.statusCode``, ``error.data.message``) with exit 1. Tokens and
cost are summed over the steps; the last text is the result.
"""

from __future__ import annotations

from typing import Any, ClassVar

from orchestrator.agents._jsonl import (
    as_float,
    as_int,
    error_event,
    load,
    obj,
    tool_line,
)
from orchestrator.agents.base import AgentAdapter, AgentContext, AgentEvent

_FATAL_NAMES = (
    "ProviderAuthError",
    "AuthError",
    "ProviderModelNotFoundError",
    "ModelNotFoundError",
)


class OpenCodeAdapter(AgentAdapter):
    """OpenCode: ``run --format json`` in the worktree, permissions auto-approved."""

    kind: ClassVar[str] = "opencode"
    default_command: ClassVar[str] = "opencode"
    prompt_on_stdin: ClassVar[bool] = True

    def argv(self, ctx: AgentContext) -> list[str]:
        argv = [
            *self.base_argv(ctx.config),
            "run",
            "--format",
            "json",
            "--dir",
            str(ctx.workdir),
            "--auto",
            *self.model_args(ctx, "-m"),
        ]
        if ctx.resume_session_id:
            argv += ["--session", ctx.resume_session_id]
        return [*argv, *ctx.config.args]

    def env(self, ctx: AgentContext) -> dict[str, str]:
        return {"PWD": str(ctx.workdir)}

    def parse(self, line: str) -> list[AgentEvent]:
        data = load(line)
        if data is None:
            return super().parse(line)
        kind = data.get("type")
        session = data.get("sessionID") if isinstance(data.get("sessionID"), str) else None
        part = obj(data.get("part"))
        if kind == "step_start":
            return [AgentEvent(type="session", session_id=session)] if session else []
        if kind == "tool_use":
            state = obj(part.get("state"))
            text = tool_line(str(part.get("tool", "tool")), state.get("input"))
            if state.get("status") == "error":
                text += f"  (failed: {' '.join(str(state.get('error', '')).split())[:200]})"
            return [AgentEvent(type="tool", text=text, session_id=session)]
        if kind == "text":
            text = str(part.get("text") or "")
            return (
                [AgentEvent(type="result", text=text, session_id=session)] if text.strip() else []
            )
        if kind == "step_finish":
            return [_usage(part, session)]
        if kind == "error":
            return _error(data.get("error"), session)
        return []


def _usage(part: dict[str, Any], session: str | None) -> AgentEvent:
    tokens = obj(part.get("tokens"))
    cache = obj(tokens.get("cache"))
    return AgentEvent(
        type="usage",
        session_id=session,
        input_tokens=as_int(tokens.get("input")),
        output_tokens=as_int(tokens.get("output")) + as_int(tokens.get("reasoning")),
        cache_tokens=as_int(cache.get("read")) + as_int(cache.get("write")),
        cost_usd=as_float(part.get("cost")),
    )


def _error(error: Any, session: str | None) -> list[AgentEvent]:
    error = error if isinstance(error, dict) else {"data": {"message": str(error)}}
    name = str(error.get("name") or "Error")
    data = obj(error.get("data"))
    message = str(data.get("message") or name)
    status = data.get("statusCode")
    status = status if isinstance(status, int) else None
    text = f"{name}: {message}" + (f" (HTTP {status})" if status else "")
    event = error_event(text, status=status, session_id=session)
    if name in _FATAL_NAMES:
        event = AgentEvent(type="error", text=text, session_id=session, is_error=True, fatal=True)
    elif data.get("isRetryable") is True and not event.fatal:
        event = AgentEvent(
            type="error", text=text, session_id=session, is_error=True, retryable=True
        )
    return [event, AgentEvent(type="result", text=text, session_id=session, is_error=True)]


Adapter = OpenCodeAdapter
