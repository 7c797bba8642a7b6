"""The generic ``command`` agent kind, the adapter registry and the adapter base."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.agents import adapter_for, executable, missing_executable
from orchestrator.agents.base import AgentContext, AgentEvent, summarize
from orchestrator.agents.command import CommandAdapter
from orchestrator.agents.process import AgentProcess, Launch, Outcome
from orchestrator.errors import AgentError
from orchestrator.plan.models import AgentConfig
from tests.support.agents import FakeAgent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def context(tmp_path: Path, config: AgentConfig, attempt: int = 2) -> AgentContext:
    return AgentContext(
        config=config,
        kind="command",
        team_id="db",
        attempt=attempt,
        agent_id="a1b2c3",
        workdir=tmp_path / "work tree",
        prompt_file=tmp_path / "prompts" / "db 2.md",
        prompt_text="Build the database.",
    )


def outcome(
    code: int | None = 0,
    sig: int | None = None,
    *,
    timed_out: bool = False,
    stalled: bool = False,
    limit: float | None = None,
) -> Outcome:
    return Outcome(code, sig, timed_out, stalled, duration=1.0, limit=limit)


def test_list_command_gets_placeholders_and_args(tmp_path: Path) -> None:
    """A list command runs without a shell, with every placeholder filled in each element,
    the agent's args appended, and other braces left alone."""
    config = AgentConfig(
        kind="command",
        command=("agent", "--prompt={prompt_file}", "{workdir}", "{team}-{attempt}-{agent_id}"),
        args=("--json={}", "{team}"),
    )
    ctx = context(tmp_path, config)
    assert CommandAdapter().argv(ctx) == [
        "agent",
        f"--prompt={ctx.prompt_file}",
        str(ctx.workdir),
        "db-2-a1b2c3",
        "--json={}",
        "db",
    ]


def test_string_command_runs_in_the_shell_with_quoted_values(tmp_path: Path) -> None:
    """A string command runs with /bin/sh -c; placeholder values and args are quoted for the
    shell, so a path with a space stays one word."""
    config = AgentConfig(kind="command", command="cat {prompt_file} | wc -c", args=("a b",))
    argv = CommandAdapter().argv(context(tmp_path, config))
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[2] == f"cat '{tmp_path}/prompts/db 2.md' | wc -c 'a b'"


def test_command_is_required(tmp_path: Path) -> None:
    """A command agent without ``command:`` is a clear error naming the team."""
    with pytest.raises(AgentError, match=r"team db.*needs a command"):
        CommandAdapter().argv(context(tmp_path, AgentConfig(kind="command")))


def test_every_line_is_a_text_event() -> None:
    """Each non-blank output line becomes one text event shown as it is; blank lines none."""
    adapter = CommandAdapter()
    assert adapter.parse("  hello world") == [AgentEvent(type="text", text="  hello world")]
    assert adapter.parse("   ") == []
    assert adapter.parse("  hello world")[0].display() == "  hello world"


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (outcome(0), None),
        (outcome(2), "exit code 2"),
        (outcome(127), "exit code 127 (command not found)"),
        (outcome(None, signal.SIGKILL), "killed by signal 9"),
        (outcome(None, 9, timed_out=True, limit=1800), "timed out after 30m"),
        (outcome(None, 15, stalled=True, limit=600), "no output for 10m"),
        (Outcome(None, None, False, False, 1.0, lost=True), "the agent's supervisor vanished"),
    ],
)
def test_judge_by_exit(result: Outcome, reason: str | None) -> None:
    """A command agent succeeds on exit 0 in time; otherwise the reason reads like the cause."""
    verdict = CommandAdapter().judge(result, [AgentEvent(type="text", text="x")])
    assert verdict.success is (reason is None)
    if reason is None:
        assert verdict.reason is None
    else:
        assert verdict.reason is not None and verdict.reason.startswith(reason)


def test_summarize_totals_usage_and_fails_on_error_result() -> None:
    """The default judgement adds up usage, keeps the last session id and result, and fails
    an attempt whose result is an error even when the exit code is 0."""
    events = [
        AgentEvent(type="session", session_id="s-1"),
        AgentEvent(type="usage", input_tokens=10, output_tokens=5, cache_tokens=2, cost_usd=0.01),
        AgentEvent(type="usage", input_tokens=1, output_tokens=1, cost_usd=0.02),
        AgentEvent(type="error", text="overloaded (529)", retryable=True, retry_after=30),
        AgentEvent(type="result", text="API error", is_error=True),
    ]
    verdict = summarize(outcome(0), events)
    assert not verdict.success
    assert verdict.reason == "API error: overloaded (529)"
    assert (verdict.input_tokens, verdict.output_tokens, verdict.cache_tokens) == (11, 6, 2)
    assert verdict.cost_usd == pytest.approx(0.03)
    assert verdict.session_id == "s-1"
    assert verdict.retryable and not verdict.fatal
    assert verdict.retry_after == 30
    ok = summarize(outcome(0), [AgentEvent(type="result", text="done")])
    assert ok.success and ok.result == "done" and not ok.retryable


def test_event_display() -> None:
    """Events render as one short readable line each."""
    assert AgentEvent(type="session", session_id="abc").display() == "session abc"
    usage = AgentEvent(type="usage", input_tokens=3, output_tokens=4, cache_tokens=5, cost_usd=0.5)
    assert usage.display() == "usage: tokens in 3 out 4, cache 5, $0.5000"
    assert AgentEvent(type="tool", text="Write\nsrc/a.py").display() == "tool: Write src/a.py"
    assert (
        AgentEvent(type="error", text="bad key", fatal=True).display() == "error (fatal): bad key"
    )
    assert AgentEvent(type="result", text="ok", is_error=True).display() == "result (error): ok"
    assert len(AgentEvent(type="message", text="x" * 5000).display()) <= 400


def test_registry() -> None:
    """Kinds are found by name; an unknown kind is a clear AgentError."""
    assert isinstance(adapter_for("command"), CommandAdapter)
    assert adapter_for("command") is adapter_for("command")
    with pytest.raises(AgentError, match="unknown agent kind 'base'"):
        adapter_for("base")


def test_missing_executable_preflight(tmp_path: Path) -> None:
    """Before a run, an agent whose program is not installed is named in one line; one that
    exists passes; a relative script path is checked against the worktree when given."""
    absent = AgentConfig(kind="command", command=("no-such-agent-cli-xyz", "run"))
    assert executable(absent) == "no-such-agent-cli-xyz"
    problem = missing_executable(absent)
    assert problem is not None and "no-such-agent-cli-xyz" in problem and "PATH" in problem
    assert missing_executable(AgentConfig(kind="command", command=(sys.executable,))) is None
    assert missing_executable(AgentConfig(kind="command", command="anything | here")) is None
    script = AgentConfig(kind="command", command=("scripts/agent.sh",))
    assert missing_executable(script) is None
    assert missing_executable(script, cwd=tmp_path) is not None
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "agent.sh").write_text("#!/bin/sh\n")
    assert missing_executable(script, cwd=tmp_path) is None


@pytest.mark.anyio
async def test_command_agent_runs_end_to_end(tmp_path: Path) -> None:
    """A command agent started from its argv reads its prompt file through the placeholder,
    and its verdict follows its exit code."""
    agent = FakeAgent(copy_prompt=True, exit_code=0).write(tmp_path / "agent.py")
    config = AgentConfig(kind="command", command=(*agent, "--prompt", "{prompt_file}"))
    ctx = context(tmp_path, config)
    ctx.workdir.mkdir()
    ctx.prompt_file.parent.mkdir()
    ctx.prompt_file.write_text(ctx.prompt_text)
    adapter = adapter_for("command")
    events: list[AgentEvent] = []

    async def on_lines(lines: list[str]) -> None:
        for line in lines:
            events.extend(adapter.parse(line))

    spec = Launch(
        argv=adapter.argv(ctx),
        cwd=ctx.workdir,
        env=dict(os.environ),
        log=tmp_path / "db.2.log",
        status=tmp_path / "db.2.status",
    )
    async with await AgentProcess.start(spec) as proc:
        result = await proc.run(timeout=30, stall_timeout=None, on_lines=on_lines)
    verdict = adapter.judge(result, events)
    assert verdict.success
    assert [e.text for e in events] == ["prompt=Build the database."]


def test_placeholders_are_substituted_in_one_pass(tmp_path: Path) -> None:
    """A value that itself contains a placeholder (a repository under a folder named
    '{workdir}') is inserted as it is: it is not substituted again, so a crafted path cannot
    break the shell quoting and run a command."""
    base = tmp_path / "{workdir}"
    workdir = tmp_path / "w';touch INJECTED;'"
    prompt = base / "p {team}.md"
    prompt.parent.mkdir(parents=True)
    prompt.write_text("the prompt\n")
    workdir.mkdir()
    ctx = AgentContext(
        config=AgentConfig(kind="command", command="cat {prompt_file}; echo {workdir}"),
        kind="command",
        team_id="db",
        attempt=1,
        agent_id="a1",
        workdir=workdir,
        prompt_file=prompt,
        prompt_text="the prompt",
    )
    argv = CommandAdapter().argv(ctx)
    assert argv[2] == f"cat {shlex.quote(str(prompt))}; echo {shlex.quote(str(workdir))}"
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.stdout == f"the prompt\n{workdir}\n"
    assert not (tmp_path / "INJECTED").exists()
    listed = CommandAdapter().argv(
        AgentContext(
            config=AgentConfig(kind="command", command=("cat", "{prompt_file}", "{workdir}")),
            kind="command",
            team_id="db",
            attempt=1,
            agent_id="a1",
            workdir=workdir,
            prompt_file=prompt,
            prompt_text="the prompt",
        )
    )
    assert listed == ["cat", str(prompt), str(workdir)]
