"""The ``claude-code`` kind: Anthropic's Claude Code CLI, headless.

Command line (checked against Claude Code 2.1.330)::

    claude -p --output-format stream-json --verbose --permission-mode bypassPermissions
           [--model M] [--max-budget-usd X] [--resume SESSION] [ARGS...]  < PROMPT_FILE

run in the team's worktree. The prompt is read from stdin (``-p`` without a
prompt argument reads it there), never passed on the command line. It prints one JSON object per
line: ``system/init`` (the session id), ``assistant`` messages whose content
holds ``text`` and ``tool_use`` blocks, ``user`` tool results,
``system/api_retry`` while it retries the API itself, and a last ``result``
with the usage totals, ``total_cost_usd``, the final text and ``is_error``.

Success is read from the result: an API error exits 1 with ``is_error: true``
while ``subtype`` still says ``success``; ``api_error_status`` (429, 529, 401,
...) tells a rate limit from a bad key. As root, Claude Code refuses to
bypass permissions unless ``IS_SANDBOX=1`` is set: that refusal (a plain
stderr line) becomes one fatal error saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from orchestrator.agents._jsonl import (
    as_float,
    as_int,
    error_event,
    load,
    obj,
    tool_line,
)
from orchestrator.agents.base import AgentAdapter, AgentContext, AgentEvent, Verdict, summarize
from orchestrator.agents.process import Outcome

ROOT_REFUSAL = "cannot be used with root/sudo privileges"
ROOT_HINT = (
    "Claude Code refuses to bypass permissions when run as root: "
    'set IS_SANDBOX=1 in the agent\'s env (agents: {name: {env: {IS_SANDBOX: "1"}}}) '
    "if this machine is a sandbox, or run orchestrate as a normal user"
)


class ClaudeCodeAdapter(AgentAdapter):
    """Claude Code: ``-p`` with stream-json output, permissions bypassed in the worktree."""

    kind: ClassVar[str] = "claude-code"
    default_command: ClassVar[str] = "claude"
    permission_mode: ClassVar[str] = "bypassPermissions"
    prompt_on_stdin: ClassVar[bool] = True

    def argv(self, ctx: AgentContext) -> list[str]:
        argv = [
            *self.base_argv(ctx.config),
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            self.permission_mode,
            *self.model_args(ctx),
        ]
        if ctx.max_budget_usd is not None:
            argv += ["--max-budget-usd", f"{ctx.max_budget_usd:g}"]
        if ctx.resume_session_id:
            argv += ["--resume", ctx.resume_session_id]
        return [*argv, *ctx.config.args]

    def parse(self, line: str) -> list[AgentEvent]:
        data = load(line)
        if data is None:
            if ROOT_REFUSAL in line:
                return [AgentEvent(type="error", text=ROOT_HINT, is_error=True, fatal=True)]
            return super().parse(line)
        kind = data.get("type")
        session = data.get("session_id") if isinstance(data.get("session_id"), str) else None
        if kind == "system":
            return _system(data, session)
        if kind == "assistant":
            return _assistant(data, session)
        if kind == "result":
            return _result(data, session)
        return []  # user (tool results), stream events, rate-limit notices: not for the log

    def judge(self, outcome: Outcome, events: Sequence[AgentEvent]) -> Verdict:
        return summarize(outcome, events)


def _system(data: dict[str, Any], session: str | None) -> list[AgentEvent]:
    subtype = data.get("subtype")
    if subtype == "init":
        model = data.get("model")
        return [
            AgentEvent(type="session", session_id=session, text=f"model {model}" if model else "")
        ]
    if subtype == "api_retry":
        status = data.get("error_status")
        attempt = data.get("attempt")
        return [
            AgentEvent(
                type="message",
                text=f"API {status or 'error'}: Claude Code retries (attempt {attempt})",
                session_id=session,
            )
        ]
    return []


def _assistant(data: dict[str, Any], session: str | None) -> list[AgentEvent]:
    message = data.get("message") or {}
    blocks = message.get("content") if isinstance(message, dict) else None
    events: list[AgentEvent] = []
    if data.get("is_api_error_message") or data.get("error"):
        # The synthetic message Claude Code writes for a failed API call; the
        # result line that follows carries the same text and decides.
        text = " ".join(str(b.get("text", "")) for b in blocks or () if isinstance(b, dict)).strip()
        return [AgentEvent(type="message", text=text or str(data.get("error")), session_id=session)]
    for block in blocks or ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and str(block.get("text", "")).strip():
            events.append(AgentEvent(type="message", text=str(block["text"]), session_id=session))
        elif block.get("type") == "tool_use":
            name = str(block.get("name", "tool"))
            events.append(
                AgentEvent(
                    type="tool", text=tool_line(name, block.get("input")), session_id=session
                )
            )
    return events


def _result(data: dict[str, Any], session: str | None) -> list[AgentEvent]:
    usage = obj(data.get("usage"))
    events = [
        AgentEvent(
            type="usage",
            session_id=session,
            input_tokens=as_int(usage.get("input_tokens")),
            output_tokens=as_int(usage.get("output_tokens")),
            cache_tokens=as_int(usage.get("cache_creation_input_tokens"))
            + as_int(usage.get("cache_read_input_tokens")),
            cost_usd=as_float(data.get("total_cost_usd")),
        )
    ]
    subtype = str(data.get("subtype") or "")
    is_error = bool(data.get("is_error")) or subtype.startswith("error")
    text = data.get("result")
    text = text if isinstance(text, str) else ""
    if is_error:
        if not text:
            text = {
                "error_max_turns": "stopped: the maximum number of turns was reached",
                "error_max_budget_usd": "stopped: the budget (--max-budget-usd) was spent",
                "error_during_execution": "the run failed during execution",
            }.get(subtype, subtype or "the agent reported an error")
        status = data.get("api_error_status")
        events.append(
            error_event(
                text, status=status if isinstance(status, int) else None, session_id=session
            )
        )
        if subtype == "error_max_budget_usd":
            events[-1] = AgentEvent(
                type="error", text=text, session_id=session, is_error=True, fatal=True
            )
    events.append(AgentEvent(type="result", text=text, session_id=session, is_error=is_error))
    return events


Adapter = ClaudeCodeAdapter
