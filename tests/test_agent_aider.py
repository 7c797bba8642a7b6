"""Aider adapter: argv, and its plain-text output, read from recordings of the real Aider (0.86.2).

The recordings (tests/fixtures/agent-output/aider/, made by record.py against
the scripted endpoint as an OpenAI-compatible provider) hold stdout, then stderr.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.agents.aider import SESSION, count
from tests.support.recordings import Recorded

REC = Recorded("aider")
FIXTURES = REC.folder
ADAPTER = REC.adapter
events_of = REC.events
verdict_of = REC.verdict


def test_argv_sends_one_message_and_leaves_commits_to_orchestrate(tmp_path: Path) -> None:
    """Aider answers yes to everything, does not commit, and restores its chat on a retry."""
    ctx = REC.context(
        tmp_path,
        team_id="t",
        attempt=2,
        agent_id="a",
        prompt_text="Do it",
        model="sonnet",
        resume_session_id=SESSION,
    )
    argv = ADAPTER.argv(ctx)
    assert argv[:3] == ["aider", "--message-file", str(tmp_path / "p.md")]
    assert "Do it" not in argv and ADAPTER.stdin(ctx) is None
    for flag in ("--yes-always", "--no-auto-commits", "--no-analytics", "--restore-chat-history"):
        assert flag in argv
    # Aider's .aider* files must stay out of the team's commits: it gitignores them.
    assert "--no-gitignore" not in argv
    assert argv[argv.index("--model") + 1] == "sonnet"


def test_output_is_not_wrapped_at_80_columns(tmp_path: Path) -> None:
    """Without a terminal Aider wraps at 80 columns; a wide COLUMNS keeps each line whole."""
    assert int(ADAPTER.env(REC.context(tmp_path))["COLUMNS"]) >= 1000


def test_token_counts_read_like_aider_prints_them() -> None:
    """2.4k, 12,345 and 1.2M are read as numbers."""
    assert (count("2.4k"), count("12,345"), count("1.2M"), count("158")) == (
        2400,
        12345,
        1_200_000,
        158,
    )


def test_cache_parts_of_the_token_line_are_read() -> None:
    """A caching provider's `cache write` / `cache hit` parts count as cache tokens."""
    (event,) = ADAPTER.parse(
        "Tokens: 12,345 sent, 2,000 cache write, 8.1k cache hit, 1.2k received. "
        "Cost: $0.03 message, $0.05 session."
    )
    assert (event.input_tokens, event.cache_tokens, event.output_tokens) == (12345, 10100, 1200)
    assert event.cost_usd == 0.03


def test_success_reports_tokens_cost_and_edits() -> None:
    """The Tokens/Cost line becomes usage with cost; each applied edit is a tool line."""
    events = events_of("success")
    assert "tool: Edit src/hello.txt" in [e.display() for e in events]
    verdict = verdict_of("success")
    assert verdict.success and verdict.session_id == SESSION
    assert (verdict.input_tokens, verdict.output_tokens, verdict.cost_usd) == (734, 25, 0.0026)


def test_a_reply_without_edits_is_a_success_for_the_agent() -> None:
    """A turn that writes nothing still ends well as far as Aider says; the engine checks files."""
    events = events_of("no_deliverable")
    assert not [e for e in events if e.type == "tool"]
    assert verdict_of("no_deliverable").success


def test_rate_limit_with_exit_zero_fails_retryable() -> None:
    """Aider gives up after about a minute of 429s and exits 0; the attempt fails, retryable."""
    verdict = verdict_of("rate_limit", 0)
    assert not verdict.success and verdict.retryable and not verdict.fatal
    assert verdict.reason is not None and verdict.reason.startswith("litellm.RateLimitError")


def test_server_error_with_exit_zero_fails_retryable() -> None:
    """Repeated 500s (litellm.InternalServerError) are retried later by orchestrate."""
    verdict = verdict_of("overloaded", 0)
    assert not verdict.success and verdict.retryable


def test_auth_error_with_exit_zero_is_fatal() -> None:
    """A bad key is fatal even though Aider exits 0."""
    verdict = verdict_of("auth_error", 0)
    assert not verdict.success and verdict.fatal and not verdict.retryable


def test_error_then_reply_is_a_success() -> None:
    """A 429 Aider recovered from by itself (a reply came after it) does not fail the attempt."""
    events = events_of("retry_then_success")
    assert any(e.type == "error" and e.retryable for e in events)
    verdict = verdict_of("retry_then_success")
    assert verdict.success and verdict.output_tokens == 25 and verdict.cost_usd


def test_resumed_chat_is_the_same_pseudo_session() -> None:
    """`--restore-chat-history` continues the chat; both attempts report the same session."""
    assert verdict_of("resume_first").session_id == verdict_of("resumed").session_id == SESSION
    assert "tool: Edit src/hello.txt" in [e.display() for e in events_of("resumed")]
