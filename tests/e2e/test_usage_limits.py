"""End-to-end: the real CLIs meet a usage limit, and the detector reads its reset from them.

Guards the recordings in tests/fixtures/agent-output/*/usage_limit*.jsonl
against a CLI update that changes how a limit is said: each CLI runs once
against the scripted endpoint answering with a limit lifting in an hour, and
what it printed must give that hour back.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from orchestrator.agents import adapter_for
from orchestrator.agents.base import AgentContext
from orchestrator.agents.limits import detect_limit
from orchestrator.plan.models import AgentConfig
from tests.e2e.clis import prepare
from tests.e2e.test_real_clis import orchestrate, repo, require  # noqa: F401 - repo: a fixture
from tests.support.llm_server import LLMServer, Turn

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(120)]

# OpenCode waits out a Retry-After itself (up to five times), so an hour's limit
# would keep it quiet for hours: its recording is made with a short one instead.
LONG_LIMIT_KINDS = ("claude-code", "codex", "gemini")


def run_cli(kind: str, llm: LLMServer, tmp: Path, prompt: str, env: dict[str, str]) -> list[str]:
    cli = prepare(kind, llm.url, tmp / "home")
    workdir = tmp / "repo"
    workdir.mkdir()
    subprocess.run(["git", "init", "-q", str(workdir)], check=True)
    (tmp / "prompt.md").write_text(prompt)
    config = AgentConfig(kind=kind, command=cli.command, model=cli.model, args=cli.args)  # type: ignore[arg-type]
    adapter = adapter_for(kind)
    ctx = AgentContext(
        config=config,
        kind=kind,
        team_id="lim",
        attempt=1,
        agent_id="a1",
        workdir=workdir,
        prompt_file=tmp / "prompt.md",
        prompt_text=prompt,
        model=cli.model,
    )
    full_env = dict(os.environ) | cli.env | adapter.env(ctx) | env
    stdin = adapter.stdin(ctx)  # the prompt, for the CLIs that read it there
    with Path(stdin or os.devnull).open() as given:
        proc = subprocess.run(
            adapter.argv(ctx),
            cwd=workdir,
            env=full_env,
            stdin=given,
            capture_output=True,
            text=True,
            timeout=100,
        )
    return proc.stdout.splitlines() + proc.stderr.splitlines()


@pytest.mark.parametrize("kind", LONG_LIMIT_KINDS)
def test_real_cli_reports_a_limit_whose_reset_we_read(kind: str, tmp_path: Path) -> None:
    """The CLI meets a limit lifting in an hour; what it prints says so, to the minute."""
    require(kind)
    zone = "Asia/Kolkata"  # a half-hour offset: a zone mix-up cannot hide
    resets_at = int(time.time()) + 3600
    mark = f"ZQlimit{kind.replace('-', '')}77"
    env = {"TZ": zone}
    if kind == "claude-code":
        # Claude Code reads the limit headers for a subscription login only.
        env |= {"ANTHROPIC_API_KEY": "", "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-scripted"}
    with LLMServer() as llm:
        llm.script(mark, Turn.limit(resets_at, times=20))
        seen = datetime.now(UTC)
        lines = run_cli(kind, llm, tmp_path, f"{mark}: write out.txt", env)
    limit = detect_limit(lines, now=seen, tz=ZoneInfo(zone))
    assert limit is not None, "\n".join(lines[-20:])
    assert limit.resets_at is not None, limit
    expected = datetime.fromtimestamp(resets_at, UTC)
    assert -timedelta(seconds=10) <= limit.resets_at - expected <= timedelta(minutes=1)


def test_claude_code_limit_pauses_its_team_then_the_next_attempt_succeeds(
    tmp_path: Path,
    repo: Path,  # noqa: F811 - the fixture
) -> None:
    """In a run, the real Claude Code meets its 5-hour limit: the team is paused (not failed,
    the attempt not counted), then after the reset its next attempt writes the deliverable."""
    require("claude-code")
    mark = "ZQlimitrun77"
    with LLMServer() as llm:
        cli = prepare("claude-code", llm.url, tmp_path / "home")
        llm.script(
            mark,
            Turn.limit(time.time() + 2, times=1),
            Turn(writes={"api.txt": "api\n"}, text="API written."),
        )
        entry = cli.agent_entry()
        entry["env"] = dict(cli.env) | {
            "ANTHROPIC_API_KEY": "",
            "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-scripted",
        }
        plan = {
            "version": 1,
            "name": "e2e-limit",
            "defaults": {"agent": "cli", "timeout": "100s", "stall_timeout": "90s", "retries": 0},
            "agents": {"cli": entry},
            "teams": [{"id": "api", "task": f"{mark}: write api.txt", "deliverables": ["api.txt"]}],
        }
        (repo / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
        run = orchestrate(repo, "run", "plan.yaml", "--backoff", "0.1")
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "anthropic usage limit: paused until" in run.stdout
    board = json.loads(orchestrate(repo, "status", "--json").stdout)
    api = board["teams"][0]
    assert api["status"] == "succeeded" and api["attempt"] == 2
