"""Claude Code adapter: argv, and its recorded stream-json output read into common events."""

from __future__ import annotations

from pathlib import Path

from orchestrator.agents.process import Outcome
from orchestrator.plan.models import AgentConfig
from tests.support.recordings import Recorded

REC = Recorded("claude-code")
FIXTURES = REC.folder
ADAPTER = REC.adapter
events_of = REC.events
verdict_of = REC.verdict
context = REC.context


def test_argv_runs_headless_with_stream_json_and_bypassed_permissions(tmp_path: Path) -> None:
    """A team's Claude Code starts non-interactively, edits auto-approved, prompt on stdin."""
    ctx = context(tmp_path)
    argv = ADAPTER.argv(ctx)
    assert argv[0] == "claude"
    assert argv[1] == "-p"
    assert argv[argv.index("--output-format") + 1] == "stream-json"
    assert "--verbose" in argv
    assert argv[argv.index("--permission-mode") + 1] == "bypassPermissions"
    assert "Build the db" not in argv and ADAPTER.stdin(ctx) == tmp_path / "p.md"
    assert "--resume" not in argv and "--model" not in argv


def test_argv_carries_model_budget_resume_and_extra_args(tmp_path: Path) -> None:
    """The plan's model, the team budget, a retry's session and the agent's args reach the CLI."""
    config = AgentConfig(kind="claude-code", command="/opt/claude --x", args=("--max-turns", "9"))
    ctx = context(
        tmp_path, config=config, model="sonnet", max_budget_usd=2.5, resume_session_id="S1"
    )
    argv = ADAPTER.argv(ctx)
    assert argv[:2] == ["/opt/claude", "--x"]
    assert argv[argv.index("--model") + 1] == "sonnet"
    assert argv[argv.index("--max-budget-usd") + 1] == "2.5"
    assert argv[argv.index("--resume") + 1] == "S1"
    assert argv[-2:] == ["--max-turns", "9"]


def test_success_reports_session_tools_tokens_cost_and_result() -> None:
    """A good run shows its Write tool call, and the board gets session id, tokens and cost."""
    events = events_of("success")
    assert "tool: Write src/hello.txt" in [e.display() for e in events]
    verdict = verdict_of("success", 0)
    assert verdict.success and verdict.reason is None
    assert verdict.session_id and verdict.session_id.count("-") == 4
    assert verdict.input_tokens > 0 and verdict.output_tokens == 50
    assert verdict.cost_usd is not None and verdict.cost_usd > 0
    assert verdict.result == "Wrote src/hello.txt."


def test_stderr_lines_between_json_are_plain_text() -> None:
    """Warnings Claude Code prints on stderr show in the log and do not break parsing."""
    kinds = [e.type for e in events_of("success")]
    assert kinds[-1] == "text"


def test_rate_limit_is_retryable_with_the_api_message() -> None:
    """A 429 fails the attempt as retryable (longer backoff), saying what the API said."""
    verdict = verdict_of("rate_limit", 1)
    assert not verdict.success and verdict.retryable and not verdict.fatal
    assert verdict.reason is not None and "429" in verdict.reason


def test_overload_is_retryable() -> None:
    """A 529 overload is retried later, not counted as the agent's fault."""
    verdict = verdict_of("overloaded", 1)
    assert not verdict.success and verdict.retryable and not verdict.fatal
    assert verdict.reason is not None and "529" in verdict.reason


def test_authentication_error_is_fatal() -> None:
    """A bad key ends the team at once with a clear message instead of burning retries."""
    verdict = verdict_of("auth_error", 1)
    assert not verdict.success and verdict.fatal and not verdict.retryable
    assert verdict.reason is not None and "API key" in verdict.reason


def test_error_result_fails_even_with_exit_zero() -> None:
    """Success is read from is_error, not only from the exit code."""
    verdict = verdict_of("rate_limit", 0)
    assert not verdict.success and verdict.retryable


def test_turn_that_writes_nothing_is_still_a_clean_agent_exit() -> None:
    """A turn that does nothing is a clean agent exit; the missing file is the engine's call."""
    verdict = verdict_of("no_deliverable", 0)
    assert verdict.success and verdict.result == "I looked around and did nothing."


def test_resumed_run_continues_the_same_session() -> None:
    """A retry with --resume reports the session it continued, so the next retry can too."""
    first = verdict_of("resume_first", 0)
    resumed = verdict_of("resumed", 0)
    assert first.session_id and resumed.session_id == first.session_id
    assert resumed.success and resumed.result == "Now written."


def test_root_refusal_is_one_fatal_line_suggesting_is_sandbox() -> None:
    """As root without IS_SANDBOX, the user is told in one line how to fix it, not retried."""
    verdict = verdict_of("root_refusal", 1)
    assert not verdict.success and verdict.fatal
    assert verdict.reason is not None and "IS_SANDBOX=1" in verdict.reason
    assert "\n" not in verdict.reason


def test_budget_stop_is_fatal() -> None:
    """Claude Code stopping at --max-budget-usd is not retried (the team's budget is spent)."""
    line = (
        '{"type":"result","subtype":"error_max_budget_usd","is_error":true,"session_id":"S",'
        '"total_cost_usd":2.01,"usage":{"input_tokens":5,"output_tokens":6}}'
    )
    outcome = Outcome(exit_code=1, signal=None, timed_out=False, stalled=False, duration=1.0)
    verdict = ADAPTER.judge(outcome, ADAPTER.parse(line))
    assert verdict.fatal and verdict.cost_usd == 2.01
    assert verdict.reason is not None and "budget" in verdict.reason
