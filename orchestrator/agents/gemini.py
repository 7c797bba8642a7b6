"""The ``gemini`` kind: Google's Gemini CLI, headless.

Command line (checked against Gemini CLI 0.61.0, see tests/fixtures/agent-output/)::

    gemini -o stream-json --approval-mode yolo --skip-trust
           [-m M] [--resume SESSION] [ARGS...]  < PROMPT_FILE

in the team's worktree. With stdin not a terminal the CLI runs headless and
reads its prompt from stdin (the prompt file): never from the command line.
``--skip-trust`` lets it work in a
folder it has not been told to trust (else a headless run fails). One JSON
object per line on stdout (``packages/core/src/output/types.ts``): ``init``
(``session_id``, ``model``), ``message`` (``role``, ``content``, ``delta``),
``tool_use`` (``tool_name``, ``parameters``), ``tool_result`` (``status``,
``error``), ``error`` (``severity``, ``message``), and a last ``result``
(``status`` success|error, ``error``, ``stats`` with ``input_tokens``,
``output_tokens``, ``cached``, ``input``). It reports no cost. Stderr
carries plain text: banners, retry notes, and a stack trace after an API
error.

Exit codes: 41 authentication, 42 bad input, 52 configuration (all fatal),
53 turn limit, 54 tool error, 130 interrupted. An API error exits with the
HTTP status itself, which the OS cuts to its low byte: 429 -> 173, 500 ->
244, 401 -> 145. An authentication failure found before the session starts
(no key) prints plain text, not JSON, and exits 41.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

from orchestrator.agents._jsonl import (
    as_int,
    classify_error,
    error_event,
    load,
    obj,
    tool_line,
)
from orchestrator.agents.base import AgentAdapter, AgentContext, AgentEvent, Verdict, summarize
from orchestrator.agents.process import Outcome

EXIT_CODES = {
    41: "authentication failed (exit 41): log in with `gemini` or set GEMINI_API_KEY",
    42: "the input was refused (exit 42)",
    52: "the Gemini CLI configuration is invalid (exit 52)",
    53: "the turn limit was reached (exit 53)",
    54: "a tool failed (exit 54)",
}
_FATAL_EXITS = frozenset({41, 42, 52})
_AUTH_TEXT_RE = re.compile(
    r"^(When using Gemini API, you must specify|Please set an Auth method|"
    r"Invalid auth method selected|When using Vertex AI, you must specify)"
)
"""The plain-text lines of an authentication failure before the session starts (exit 41)."""


def http_status(exit_code: int | None) -> int | None:
    """The HTTP status an API error exit stands for (exit 173 -> 429), or None.

    The CLI exits with the status (``process.exit(429)``); the OS keeps the low
    byte, so 400..511 arrive as 144..255, above every exit code of its own.
    """
    if exit_code is not None and 144 <= exit_code <= 255:
        return exit_code + 256
    return None


class GeminiAdapter(AgentAdapter):
    """Gemini CLI: headless (prompt on stdin) with stream-json output and yolo approvals."""

    kind: ClassVar[str] = "gemini"
    default_command: ClassVar[str] = "gemini"
    prompt_on_stdin: ClassVar[bool] = True

    def argv(self, ctx: AgentContext) -> list[str]:
        argv = [
            *self.base_argv(ctx.config),
            "-o",
            "stream-json",
            "--approval-mode",
            "yolo",
            "--skip-trust",
            *self.model_args(ctx, "-m"),
        ]
        if ctx.resume_session_id:
            argv += ["--resume", ctx.resume_session_id]
        return [*argv, *ctx.config.args]

    def env(self, ctx: AgentContext) -> dict[str, str]:
        return {"GEMINI_CLI_TRUST_WORKSPACE": "true"}

    def parse(self, line: str) -> list[AgentEvent]:
        data = load(line)
        if data is None:
            if _AUTH_TEXT_RE.match(line.strip()):
                return [error_event(line.strip(), status=401)]
            return super().parse(line)
        kind = data.get("type")
        if kind == "init":
            session = data.get("session_id")
            model = data.get("model")
            return [
                AgentEvent(
                    type="session",
                    session_id=session if isinstance(session, str) else None,
                    text=f"model {model}" if model else "",
                )
            ]
        if kind == "message" and data.get("role") == "assistant":
            text = str(data.get("content") or "")
            return [AgentEvent(type="message", text=text)] if text.strip() else []
        if kind == "tool_use":
            name = str(data.get("tool_name") or "tool")
            return [AgentEvent(type="tool", text=tool_line(name, data.get("parameters")))]
        if kind == "tool_result" and data.get("status") == "error":
            error = obj(data.get("error"))
            return [AgentEvent(type="message", text=f"tool failed: {error.get('message', '')}")]
        if kind == "error":
            text = str(data.get("message") or "")
            if data.get("severity") == "warning":
                return [AgentEvent(type="message", text=f"warning: {text}")]
            return [error_event(text)]
        if kind == "result":
            return _result(data)
        return []

    def judge(self, outcome: Outcome, events: Sequence[AgentEvent]) -> Verdict:
        verdict = summarize(outcome, events)
        if not verdict.success and not any(e.type in ("message", "tool") for e in events):
            # Gemini CLI drops the prompt of a session whose first request failed, and then
            # refuses `--resume` of it ("No previous sessions found", exit 42): nothing
            # happened in that session, so the retry starts a fresh one.
            verdict = replace(verdict, session_id=None)
        code = outcome.exit_code
        status = http_status(code)
        if not verdict.success and status is not None:
            retryable, fatal = classify_error(status, "")
            said = (verdict.reason or "").removeprefix(f"exit code {code}")
            return replace(
                verdict,
                reason=f"HTTP {status} (exit {code}){said}",
                retryable=retryable,
                fatal=fatal,
            )
        if verdict.success or code not in EXIT_CODES:
            return verdict
        reason = EXIT_CODES[code]
        if verdict.reason and verdict.reason != f"exit code {code}":
            reason += verdict.reason.removeprefix(f"exit code {code}")
        fatal = verdict.fatal or code in _FATAL_EXITS
        return replace(
            verdict, reason=reason, fatal=fatal, retryable=verdict.retryable and not fatal
        )


def _result(data: dict[str, Any]) -> list[AgentEvent]:
    stats = obj(data.get("stats"))
    cached = as_int(stats.get("cached"))
    fresh = stats.get("input")
    events = []
    if stats:
        events.append(
            AgentEvent(
                type="usage",
                input_tokens=as_int(fresh)
                if fresh is not None
                else as_int(stats.get("input_tokens")) - cached,
                output_tokens=as_int(stats.get("output_tokens")),
                cache_tokens=cached,
            )
        )
    if data.get("status") == "error":
        error = obj(data.get("error"))
        text = " ".join(str(error.get("message") or "the Gemini CLI reported an error").split())
        events += [error_event(text), AgentEvent(type="result", text=text, is_error=True)]
    return events  # a success carries no text: the messages before it are the answer


Adapter = GeminiAdapter
