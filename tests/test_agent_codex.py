"""Codex adapter: argv, and its recorded ``exec --json`` output read into common events."""

from __future__ import annotations

from pathlib import Path

from orchestrator.plan.models import AgentConfig
from tests.support.recordings import Recorded

REC = Recorded("codex")
FIXTURES = REC.folder
ADAPTER = REC.adapter
events_of = REC.events
verdict_of = REC.verdict
context = REC.context


def test_argv_is_exec_json_in_the_worktree_sandbox(tmp_path: Path) -> None:
    """Codex runs `exec --json` rooted at the team's worktree, able to write there."""
    ctx = context(tmp_path)
    argv = ADAPTER.argv(ctx)
    assert argv[:3] == ["codex", "exec", "--json"]
    assert "--skip-git-repo-check" in argv
    assert argv[argv.index("-C") + 1] == str(tmp_path)
    assert argv[argv.index("-s") + 1] == "workspace-write"
    assert argv[-1] == "-" and ADAPTER.stdin(ctx) == tmp_path / "p.md"  # prompt on stdin


def test_resume_puts_flags_before_the_subcommand(tmp_path: Path) -> None:
    """A retry continues the thread (`exec ... resume ID`); the agent's -c overrides still apply."""
    config = AgentConfig(kind="codex", args=("-c", "model_provider=x"))
    argv = ADAPTER.argv(context(tmp_path, config=config, model="gpt-5", resume_session_id="T1"))
    assert argv[argv.index("-m") + 1] == "gpt-5"
    assert argv.index("-c") < argv.index("resume")
    assert argv[argv.index("resume") + 1] == "T1"
    assert argv[-1] == "-"


def test_success_reports_thread_command_tokens_and_final_message() -> None:
    """The shell command Codex ran is one readable line; tokens and the answer reach the board."""
    shown = [e.display() for e in events_of("success")]
    assert any(s.startswith("tool: Bash mkdir -p src && printf") for s in shown)
    assert any("Model metadata" in s and s.startswith("warning") for s in shown)
    verdict = verdict_of("success", 0)
    assert verdict.success
    assert verdict.session_id and len(verdict.session_id) == 36
    assert verdict.input_tokens > 0 and verdict.output_tokens == 50
    assert verdict.cost_usd is None  # Codex reports no cost
    assert verdict.result == "Wrote src/hello.txt."


def test_rate_limit_is_retryable() -> None:
    """`exceeded retry limit, last status: 429` fails the attempt as retryable."""
    verdict = verdict_of("rate_limit", 1)
    assert not verdict.success and verdict.retryable and not verdict.fatal
    assert verdict.reason is not None and "429" in verdict.reason


def test_server_error_is_retryable() -> None:
    """A 5xx ("high demand") is retried later."""
    verdict = verdict_of("overloaded", 1)
    assert not verdict.success and verdict.retryable


def test_unauthorized_is_fatal() -> None:
    """A 401 ends the team with the reason instead of retrying."""
    verdict = verdict_of("auth_error", 1)
    assert not verdict.success and verdict.fatal and not verdict.retryable
    assert verdict.reason is not None and "401" in verdict.reason


def test_turn_failed_fails_even_with_exit_zero() -> None:
    """Success comes from the turn, not only the exit code."""
    assert not verdict_of("rate_limit", 0).success


def test_resumed_thread_keeps_its_id() -> None:
    """`codex exec resume` reports the same thread, and the retry's work is seen."""
    first, resumed = verdict_of("resume_first", 0), verdict_of("resumed", 0)
    assert resumed.session_id == first.session_id
    assert resumed.success and resumed.result == "Now written."


def test_sandbox_from_the_agent_args_replaces_the_default(tmp_path: Path) -> None:
    """`args: [-s, danger-full-access]` works: Codex refuses a second -s."""
    config = AgentConfig(kind="codex", args=("-s", "danger-full-access"))
    argv = ADAPTER.argv(context(tmp_path, config=config))
    assert argv.count("-s") == 1 and argv[argv.index("-s") + 1] == "danger-full-access"
