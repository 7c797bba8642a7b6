"""Gemini CLI adapter: argv and stream-json (recordings written from its documented format)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.agents.base import AgentContext
from orchestrator.plan import AgentConfig
from tests.support.recordings import Recorded

REC = Recorded("gemini")
FIXTURES = REC.folder
ADAPTER = REC.adapter
events_of = REC.events
verdict_of = REC.verdict


def test_argv_is_headless_yolo_stream_json(tmp_path: Path) -> None:
    """Gemini runs non-interactively with approvals off, resuming its session on a retry."""
    ctx = AgentContext(
        config=AgentConfig(kind="gemini", args=("--debug",)),
        kind="gemini",
        team_id="t",
        attempt=2,
        agent_id="a",
        workdir=tmp_path,
        prompt_file=tmp_path / "p.md",
        prompt_text="Do it",
        model="gemini-2.5-pro",
        resume_session_id="S9",
    )
    argv = ADAPTER.argv(ctx)
    assert argv[:3] == ["gemini", "-p", "Do it"]
    assert argv[argv.index("-o") + 1] == "stream-json"
    assert argv[argv.index("--approval-mode") + 1] == "yolo"
    assert argv[argv.index("-m") + 1] == "gemini-2.5-pro"
    assert argv[argv.index("--resume") + 1] == "S9"
    assert argv[-1] == "--debug"


def test_success_reports_session_tool_and_tokens() -> None:
    """Session id, the write_file call and token counts (cache apart) reach the board."""
    shown = [e.display() for e in events_of("success")]
    assert "tool: write_file src/hello.txt" in shown
    verdict = verdict_of("success", 0)
    assert verdict.success and verdict.session_id == "c0ffee00-1111-4222-8333-444455556666"
    assert (verdict.input_tokens, verdict.output_tokens, verdict.cache_tokens) == (6350, 60, 2000)


def test_quota_error_is_retryable() -> None:
    """A 429 / RESOURCE_EXHAUSTED result is retried with the longer backoff."""
    verdict = verdict_of("rate_limit", 1)
    assert not verdict.success and verdict.retryable


def test_auth_exit_41_is_fatal_with_a_hint() -> None:
    """Exit 41 (no login) ends the team with a line saying how to log in."""
    verdict = verdict_of("auth_error", 41)
    assert not verdict.success and verdict.fatal and not verdict.retryable
    assert verdict.reason is not None and "authentication" in verdict.reason


def test_resumed_session_keeps_its_id() -> None:
    """`--resume ID` reports the same session."""
    assert verdict_of("resumed", 0).session_id == verdict_of("success", 0).session_id
