"""The ``aider`` kind: Aider, one message, no chat.

Command line (from Aider's documentation and source; not run here)::

    aider --message PROMPT --yes-always --no-stream --no-pretty --no-auto-commits
          --no-gitignore --no-check-update --no-show-model-warnings
          [--model M] [--restore-chat-history] [ARGS...]

in the team's worktree with stdin closed. orchestrate commits the worktree
itself, so Aider does not (``--no-auto-commits``) and leaves ``.gitignore``
alone. Aider prints no JSON: each model reply ends with a line
``Tokens: 2.4k sent, 158 received. Cost: $0.0089 message, $0.0089 session.``
(with ``cache write`` / ``cache hit`` counts when the provider caches),
``Applied edit to PATH`` for each edited file, and litellm errors such as
``litellm.RateLimitError: ...`` or ``litellm.AuthenticationError: ...``.

Aider exits 0 even when the model call failed, so an error that is not
followed by a model reply fails the attempt. It has no session id: the chat
lives in ``.aider.chat.history.md`` in the worktree, so the adapter reports
the pseudo session ``aider-chat-history`` and a retry that resumes it passes
``--restore-chat-history``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar

from orchestrator.agentproc import Outcome
from orchestrator.agents._jsonl import error_event, prompt_arg
from orchestrator.agents.base import AgentAdapter, AgentContext, AgentEvent, Verdict, summarize

SESSION = "aider-chat-history"
"""The pseudo session id: the chat history file Aider keeps in the worktree."""

_COUNT = r"([\d.,]+[kKmM]?)"
_TOKENS_RE = re.compile(rf"^Tokens: {_COUNT} sent(?P<rest>.*?) {_COUNT} received\.")
_CACHE_RE = re.compile(rf"{_COUNT} cache (?:write|hit)")
_COST_RE = re.compile(r"Cost: \$([\d.]+) message")
_EDIT_RE = re.compile(r"^Applied edit to (.+)$")
_BANNER_RE = re.compile(r"^Aider v\d")
_ERROR_RE = re.compile(
    r"^(litellm\.\w+(?:Error|Exception)\b.*|The API provider .*|"
    r".*(?:API key|api_key).* (?:missing|not set|invalid).*|Model .* not found.*)$",
    re.IGNORECASE,
)


def count(text: str) -> int:
    """``2.4k`` -> 2400, ``1,234`` -> 1234, ``1.2M`` -> 1200000."""
    text = text.replace(",", "")
    scale = 1
    if text[-1:] in "kK":
        scale, text = 1000, text[:-1]
    elif text[-1:] in "mM":
        scale, text = 1_000_000, text[:-1]
    try:
        return round(float(text) * scale)
    except ValueError:
        return 0


class AiderAdapter(AgentAdapter):
    """Aider: ``--message`` with every confirmation answered yes."""

    kind: ClassVar[str] = "aider"
    default_command: ClassVar[str] = "aider"

    def argv(self, ctx: AgentContext) -> list[str]:
        argv = [
            *self.base_argv(ctx.config),
            "--message",
            prompt_arg(ctx),
            "--yes-always",
            "--no-stream",
            "--no-pretty",
            "--no-auto-commits",
            "--no-gitignore",
            "--no-check-update",
            "--no-show-model-warnings",
            *self.model_args(ctx),
        ]
        if ctx.resume_session_id:
            argv.append("--restore-chat-history")
        return [*argv, *ctx.config.args]

    def parse(self, line: str) -> list[AgentEvent]:
        text = line.strip()
        if not text:
            return []
        if _BANNER_RE.match(text):
            return [AgentEvent(type="session", session_id=SESSION, text=text)]
        m = _TOKENS_RE.match(text)
        if m:
            cache = sum(count(c) for c in _CACHE_RE.findall(m.group("rest")))
            cost = _COST_RE.search(text)
            return [
                AgentEvent(
                    type="usage",
                    input_tokens=count(m.group(1)),
                    output_tokens=count(m.group(3)),
                    cache_tokens=cache,
                    cost_usd=float(cost.group(1)) if cost else None,
                )
            ]
        m = _EDIT_RE.match(text)
        if m:
            return [AgentEvent(type="tool", text=f"Edit {m.group(1)}")]
        if _ERROR_RE.match(text):
            return [error_event(text)]
        return [AgentEvent(type="text", text=line.rstrip())]

    def judge(self, outcome: Outcome, events: Sequence[AgentEvent]) -> Verdict:
        verdict = summarize(outcome, events)
        last_error = last_reply = -1
        for i, event in enumerate(events):
            if event.type == "error":
                last_error = i
            elif event.type == "usage":
                last_reply = i
        if not verdict.success or last_error <= last_reply:
            return verdict
        # Exit 0, but the model call failed after the last reply (or there was none).
        error = events[last_error]
        return replace(
            verdict,
            success=False,
            reason=error.text,
            retryable=error.retryable,
            fatal=error.fatal,
            retry_after=error.retry_after,
        )


Adapter = AiderAdapter
