"""Gemini CLI adapter: argv and stream-json, read from recordings of the real CLI (0.61.0).

The recordings (tests/fixtures/agent-output/gemini/, made by record.py against
the scripted endpoint) hold stdout's JSON lines, then stderr's plain text.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.agents.gemini import http_status
from orchestrator.plan.models import AgentConfig
from tests.support.recordings import Recorded

REC = Recorded("gemini")
FIXTURES = REC.folder
ADAPTER = REC.adapter
events_of = REC.events
verdict_of = REC.verdict


def test_argv_is_headless_yolo_stream_json(tmp_path: Path) -> None:
    """Gemini runs non-interactively with approvals off, resuming its session on a retry."""
    ctx = REC.context(
        tmp_path,
        config=AgentConfig(kind="gemini", args=("--debug",)),
        team_id="t",
        attempt=2,
        agent_id="a",
        prompt_text="Do it",
        model="gemini-2.5-pro",
        resume_session_id="S9",
    )
    argv = ADAPTER.argv(ctx)
    assert argv[:2] == ["gemini", "-o"] and "-p" not in argv and "Do it" not in argv
    assert ADAPTER.stdin(ctx) == tmp_path / "p.md"  # headless: the prompt comes on stdin
    assert argv[argv.index("-o") + 1] == "stream-json"
    assert argv[argv.index("--approval-mode") + 1] == "yolo"
    assert argv[argv.index("-m") + 1] == "gemini-2.5-pro"
    assert argv[argv.index("--resume") + 1] == "S9"
    assert argv[-1] == "--debug"


def test_success_reports_session_tool_message_and_tokens() -> None:
    """Session id, the write_file call, the answer and token counts reach the board."""
    events = events_of("success")
    shown = [e.display() for e in events]
    assert any(s.startswith("tool: write_file /") and s.endswith("/src/hello.txt") for s in shown)
    assert "Wrote src/hello.txt." in shown
    verdict = verdict_of("success", 0)
    assert verdict.success and verdict.session_id == "62a5b87a-5133-4eb6-a29d-5da02f71b145"
    assert (verdict.input_tokens, verdict.output_tokens, verdict.cache_tokens) == (25473, 50, 0)
    assert verdict.cost_usd is None


def test_a_turn_that_writes_nothing_is_still_a_success_for_the_agent() -> None:
    """The CLI's verdict is success; the missing deliverable is the engine's to find."""
    verdict = verdict_of("no_deliverable", 0)
    assert verdict.success and verdict.output_tokens == 25


def test_http_status_exit_codes_are_read_back() -> None:
    """The CLI exits with the HTTP status cut to a byte: 173 is 429, 145 is 401."""
    assert [http_status(c) for c in (173, 244, 145, 41, 0, None)] == [
        429,
        500,
        401,
        None,
        None,
        None,
    ]


def test_rate_limit_is_retryable_and_names_the_status() -> None:
    """A 429 (exit 173) is retried with the longer backoff; the reason says HTTP 429, one line."""
    verdict = verdict_of("rate_limit", 173)
    assert not verdict.success and verdict.retryable and not verdict.fatal
    assert verdict.reason is not None and verdict.reason.startswith("HTTP 429 (exit 173): ")
    assert "\n" not in verdict.reason


def test_server_error_is_retryable() -> None:
    """A 500 (exit 244) is retried."""
    verdict = verdict_of("overloaded", 244)
    assert not verdict.success and verdict.retryable


def test_bad_key_is_fatal() -> None:
    """A 401 from the API (exit 145) ends the team: retrying cannot fix a key."""
    verdict = verdict_of("auth_error", 145)
    assert not verdict.success and verdict.fatal and not verdict.retryable
    assert verdict.reason is not None and "401" in verdict.reason


def test_missing_key_exit_41_is_fatal_with_the_cli_message() -> None:
    """No key: plain text on stderr and exit 41; the team ends with a hint and the CLI's line."""
    verdict = verdict_of("auth_missing", 41)
    assert not verdict.success and verdict.fatal and not verdict.retryable
    assert verdict.reason is not None
    assert verdict.reason.startswith("authentication failed (exit 41)")
    assert "GEMINI_API_KEY environment variable" in verdict.reason


def test_resumed_session_keeps_its_id() -> None:
    """`--resume ID` continues the first attempt's session and reports the same id."""
    first, resumed = verdict_of("resume_first", 0), verdict_of("resumed", 0)
    assert first.session_id and resumed.session_id == first.session_id
    assert resumed.success
