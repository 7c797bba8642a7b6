"""OpenCode adapter: argv, and its recorded ``run --format json`` output read into common events."""

from __future__ import annotations

from pathlib import Path

from tests.support.recordings import Recorded

REC = Recorded("opencode")
FIXTURES = REC.folder
ADAPTER = REC.adapter
events_of = REC.events
verdict_of = REC.verdict
context = REC.context


def test_argv_pins_the_worktree_and_approves_edits(tmp_path: Path) -> None:
    """OpenCode works in the team's worktree (--dir and PWD), JSON output, edits approved."""
    ctx = context(tmp_path, model="scripted/m1", resume_session_id="ses_1")
    argv = ADAPTER.argv(ctx)
    assert argv[:4] == ["opencode", "run", "--format", "json"]
    assert argv[argv.index("--dir") + 1] == str(tmp_path)
    assert "--auto" in argv
    assert argv[argv.index("-m") + 1] == "scripted/m1"
    assert argv[argv.index("--session") + 1] == "ses_1"
    assert "Build the db" not in argv and ADAPTER.stdin(ctx) == tmp_path / "p.md"
    assert ADAPTER.env(ctx) == {"PWD": str(tmp_path)}


def test_success_sums_steps_and_shows_the_write() -> None:
    """Tokens add up over the model steps; the write tool call is one readable line."""
    events = events_of("success")
    assert any(e.display().startswith("tool: write /") for e in events)
    verdict = verdict_of("success", 0)
    assert verdict.success and verdict.result == "Wrote src/hello.txt."
    assert verdict.session_id and verdict.session_id.startswith("ses_")
    usage = [e for e in events if e.type == "usage"]
    assert len(usage) == 2 and verdict.input_tokens == sum(e.input_tokens for e in usage)
    assert verdict.output_tokens == 50 and verdict.cost_usd == 0


def test_rate_limit_is_retryable() -> None:
    """OpenCode giving up on a 429 fails the attempt as retryable."""
    verdict = verdict_of("rate_limit", 1)
    assert not verdict.success and verdict.retryable and not verdict.fatal
    assert verdict.reason is not None and "429" in verdict.reason


def test_auth_error_is_fatal() -> None:
    """A 401 from the provider ends the team, not retried."""
    verdict = verdict_of("auth_error", 1)
    assert not verdict.success and verdict.fatal


def test_error_line_fails_even_with_exit_zero() -> None:
    """An error event fails the attempt whatever the exit code says."""
    assert not verdict_of("rate_limit", 0).success


def test_resumed_session_keeps_its_id() -> None:
    """`--session ID` continues the same session and its answer is the result."""
    first, resumed = verdict_of("resume_first", 0), verdict_of("resumed", 0)
    assert first.session_id and resumed.session_id == first.session_id
    assert resumed.result == "Now written."
