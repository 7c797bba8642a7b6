"""The ``aider`` kind: Aider, one message, no chat.

Command line (checked against Aider 0.86.2, see tests/fixtures/agent-output/)::

    aider --message-file PROMPT_FILE --yes-always --no-stream --no-pretty --no-auto-commits
          --no-check-update --no-show-release-notes --no-analytics
          --no-show-model-warnings [--model M] [--restore-chat-history] [ARGS...]

in the team's worktree with stdin closed; the prompt is read from its file, never
passed on the command line. orchestrate commits the worktree
itself, so Aider does not (``--no-auto-commits``). Aider keeps its chat
history and repo-map cache in ``.aider*`` files in the worktree; it adds
``.aider*`` to ``.gitignore`` (the default, answered yes), else orchestrate's
``git add -A`` would commit them into every team's branch and they would
conflict at the merge. ``--no-analytics``: ``--yes-always`` would otherwise
answer yes to its analytics opt-in question. ``COLUMNS`` is set wide:
without a terminal Aider wraps its output at 80 columns, splitting the lines
read here.

Aider prints no JSON: each model reply ends with a line
``Tokens: 723 sent, 25 received. Cost: $0.0025 message, $0.0025 session.``
(``cache write`` / ``cache hit`` counts when the provider caches; no Cost
part when the model has no price), ``Applied edit to PATH`` for each edited
file, and litellm errors: ``litellm.RateLimitError: ...``,
``litellm.InternalServerError: ...``, ``litellm.AuthenticationError: ...``,
each followed by Aider's advice (``The API provider ...``) and, for those it
retries, ``Retrying in N seconds...`` (backing off from 0.2 s, giving up after
about a minute).

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

from orchestrator.agents._jsonl import error_event
from orchestrator.agents.base import AgentAdapter, AgentContext, AgentEvent, Verdict, summarize
from orchestrator.agents.process import Outcome

SESSION = "aider-chat-history"
"""The pseudo session id: the chat history file Aider keeps in the worktree."""

_COUNT = r"([\d.,]+[kKmM]?)"
_TOKENS_RE = re.compile(rf"^Tokens: {_COUNT} sent(?P<rest>.*?) {_COUNT} received\.")
_CACHE_RE = re.compile(rf"{_COUNT} cache (?:write|hit)")
_COST_RE = re.compile(r"Cost: \$([\d.]+) message")
_EDIT_RE = re.compile(r"^Applied edit to (.+)$")
_BANNER_RE = re.compile(r"^Aider v\d")
_LITELLM_RE = re.compile(r"^litellm\.(\w+?)(?:Error|Exception)\b")
_ERROR_RE = re.compile(
    r"^(litellm\.\w+(?:Error|Exception)\b.*|"
    r".*(?:API key|api_key).* (?:missing|not set|invalid).*|Model .* not found.*)$",
    re.IGNORECASE,
)
_ADVICE_RE = re.compile(r"^The API provider\b")
_STATUS = {
    "RateLimit": 429,
    "InternalServer": 500,
    "ServiceUnavailable": 503,
    "APIConnection": 503,
    "Timeout": 504,
    "Authentication": 401,
    "PermissionDenied": 403,
    "BudgetExceeded": 402,
    "BadRequest": 400,
    "NotFound": 404,
    "ContextWindowExceeded": 400,
    "ContentPolicyViolation": 400,
}
"""HTTP status of each litellm exception class (litellm.RateLimitError -> 429)."""


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
    """Aider: ``--message-file`` (the prompt file) with every confirmation answered yes."""

    kind: ClassVar[str] = "aider"
    default_command: ClassVar[str] = "aider"

    def argv(self, ctx: AgentContext) -> list[str]:
        argv = [
            *self.base_argv(ctx.config),
            "--message-file",
            str(ctx.prompt_file),
            "--yes-always",
            "--no-stream",
            "--no-pretty",
            "--no-auto-commits",
            "--no-check-update",
            "--no-show-release-notes",
            "--no-analytics",
            "--no-show-model-warnings",
            *self.model_args(ctx),
        ]
        if ctx.resume_session_id:
            argv.append("--restore-chat-history")
        return [*argv, *ctx.config.args]

    def env(self, ctx: AgentContext) -> dict[str, str]:
        return {"COLUMNS": "4096"}  # no wrapping at 80 columns without a terminal

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
        m = _LITELLM_RE.match(text)
        if m:
            return [error_event(text, status=_STATUS.get(m.group(1)))]
        if _ERROR_RE.match(text):
            return [error_event(text)]
        if _ADVICE_RE.match(text):
            return [AgentEvent(type="message", text=text)]
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
