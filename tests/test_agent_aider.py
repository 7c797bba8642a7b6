"""Aider adapter: argv, and its plain-text output (token and cost lines, litellm errors)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.agents.aider import SESSION, count
from orchestrator.agents.base import AgentContext
from orchestrator.plan import AgentConfig
from tests.support.recordings import Recorded

REC = Recorded("aider")
FIXTURES = REC.folder
ADAPTER = REC.adapter
events_of = REC.events
verdict_of = REC.verdict


def test_argv_sends_one_message_and_leaves_commits_to_orchestrate(tmp_path: Path) -> None:
    """Aider answers yes to everything, does not commit, and restores its chat on a retry."""
    ctx = AgentContext(
        config=AgentConfig(kind="aider"),
        kind="aider",
        team_id="t",
        attempt=2,
        agent_id="a",
        workdir=tmp_path,
        prompt_file=tmp_path / "p.md",
        prompt_text="Do it",
        model="sonnet",
        resume_session_id=SESSION,
    )
    argv = ADAPTER.argv(ctx)
    assert argv[:3] == ["aider", "--message", "Do it"]
    for flag in ("--yes-always", "--no-auto-commits", "--no-gitignore", "--restore-chat-history"):
        assert flag in argv
    assert argv[argv.index("--model") + 1] == "sonnet"


def test_token_counts_read_like_aider_prints_them() -> None:
    """2.4k, 12,345 and 1.2M are read as numbers."""
    assert (count("2.4k"), count("12,345"), count("1.2M"), count("158")) == (
        2400,
        12345,
        1_200_000,
        158,
    )


def test_success_reports_tokens_cost_and_edits() -> None:
    """The Tokens/Cost line becomes usage with cost; each applied edit is a tool line."""
    events = events_of("success")
    assert "tool: Edit src/hello.txt" in [e.display() for e in events]
    verdict = verdict_of("success")
    assert verdict.success and verdict.session_id == SESSION
    assert (verdict.input_tokens, verdict.output_tokens, verdict.cost_usd) == (2400, 158, 0.0096)


def test_rate_limit_with_exit_zero_fails_retryable() -> None:
    """Aider exits 0 after a failed model call; the attempt still fails, retryable."""
    verdict = verdict_of("rate_limit", 0)
    assert not verdict.success and verdict.retryable


def test_auth_error_with_exit_zero_is_fatal() -> None:
    """A bad key is fatal even though Aider exits 0."""
    verdict = verdict_of("auth_error", 0)
    assert not verdict.success and verdict.fatal


def test_error_then_reply_is_a_success_with_cache_tokens() -> None:
    """An error Aider recovered from (a reply came after it) does not fail the attempt."""
    verdict = verdict_of("retry_then_success")
    assert verdict.success
    assert (verdict.input_tokens, verdict.cache_tokens, verdict.output_tokens) == (
        12345,
        10100,
        1200,
    )
    assert verdict.cost_usd == 0.03
