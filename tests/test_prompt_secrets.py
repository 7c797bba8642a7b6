"""Secrets never reach a check, a prompt or an agent's command line.

The repro of the review: a check that prints the environment and fails, with
orchestrate's Redis URL (and its password) and an API key set. The check must
get the agent's environment (plan ``env``, ``env_allow``, no ``ORCHESTRATE_*``),
what it printed must reach the retry prompt redacted, and the prompt must reach
the agent on stdin, never on its command line (``/proc/PID/cmdline``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.agents.runner import AgentJob, prepare, run_secrets
from orchestrator.plan.load import load_plan
from orchestrator.plan.models import AgentConfig
from orchestrator.run.engine import EngineOptions, start_run
from orchestrator.state.store import Store
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.anyio

FAST = EngineOptions(backoff_initial=0.01, backoff_max=0.05, backoff_jitter=0.01, kill_grace=1.0)
KEY = "sk-live-abcdef123456"
PASSWORD = "hunter2-redis-pass"

# A stand-in for a CLI that reads its prompt on stdin (run as the claude-code kind):
# it records its own command line, its supervisor's, and what it read on stdin.
AGENT = """\
import json, os, sys
out = os.path.join(sys.argv[1], os.environ["ORCHESTRATE_ATTEMPT"])
os.makedirs(out, exist_ok=True)
def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read().decode("utf-8", "replace")
json.dump({"self": cmdline(os.getpid()), "parent": cmdline(os.getppid()),
           "stdin": sys.stdin.read()}, open(os.path.join(out, "seen.json"), "w"))
os.makedirs("src", exist_ok=True)
open("src/db.txt", "w").write("db\\n")
"""


async def test_checks_get_the_agents_environment_and_prompts_hold_no_secret(
    git_repo: GitRepo, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing check that prints the environment: it sees the plan's env and the allowed
    variables but no ORCHESTRATE_* and nothing env_allow leaves out; the retry prompt quotes
    its output with the API key masked; no prompt is on the agent's or supervisor's argv."""
    monkeypatch.setenv("ORCHESTRATE_REDIS_URL", f"redis://:{PASSWORD}@example:6379/0")
    monkeypatch.setenv("MY_API_KEY", KEY)
    monkeypatch.setenv("DROPPED_VAR", "dropped-value")
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    seen = tmp_path / "seen"
    check = "env | grep -E 'ORCHESTRATE_|MY_API_KEY|PLAN_VAR|DROPPED_VAR'; false"
    doc = {
        "version": 1,
        "name": "secrets",
        "repo": git_repo.path.name,
        "env": {"PLAN_VAR": "plan-value"},
        "env_allow": ["PATH", "LANG", "MY_*"],
        "defaults": {"agent": "stdin-agent", "timeout": "60s", "retries": 1},
        "agents": {
            "stdin-agent": {
                "kind": "claude-code",
                "command": [sys.executable, str(script), str(seen)],
            }
        },
        "teams": [
            {
                "id": "db",
                "task": "Build the db part (TASK-MARKER).",
                "deliverables": ["src/db.txt"],
                "checks": [check],
            }
        ],
    }
    plan_file = git_repo.path.parent / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    layout = git_repo.state_layout()
    result = await start_run(load_plan(plan_file), store=store, layout=layout, options=FAST)
    assert result.status == "failed"  # the check always fails: two attempts

    retry_prompt = layout.prompt_file(result.run_id, "db", 2).read_text()
    assert "PLAN_VAR=plan-value" in retry_prompt  # the check saw the plan's env
    assert "MY_API_KEY=***" in retry_prompt  # ... and the key, masked in the prompt
    assert KEY not in retry_prompt
    lines = retry_prompt.splitlines()
    assert not any(line.startswith(("ORCHESTRATE_", "DROPPED_VAR=")) for line in lines)
    assert PASSWORD not in retry_prompt

    for attempt in (1, 2):
        got = json.loads((seen / str(attempt) / "seen.json").read_text())
        prompt = layout.prompt_file(result.run_id, "db", attempt).read_text()
        assert got["stdin"] == prompt  # the prompt arrived on stdin, whole
        for cmdline in (got["self"], got["parent"]):
            assert "TASK-MARKER" not in cmdline and KEY not in cmdline


async def test_every_prompt_is_written_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a prompt quotes (an upstream summary, a conflicted file, a log line), the
    file the agent reads holds no secret value: orchestrate's, the agent's, or the Redis
    password given as an extra secret."""
    monkeypatch.setenv("SERVICE_TOKEN", "tok-0123456789")
    job = AgentJob(
        config=AgentConfig(kind="codex"),
        team_id="db",
        attempt=1,
        agent_id="a1",
        workdir=tmp_path,
        prompt="upstream said tok-0123456789; file has s3cret-value; redis pw-abcdef",
        prompt_file=tmp_path / "prompt.md",
        log=tmp_path / "log",
        status=tmp_path / "status",
        env={"OTHER_SECRET": "s3cret-value"},
        secrets=run_secrets(["pw-abcdef"]),
    )
    prepared = prepare(job)
    written = job.prompt_file.read_text()
    assert written == "upstream said ***; file has ***; redis ***"
    assert prepared.launch.stdin == job.prompt_file
    assert not any("upstream" in arg for arg in prepared.argv)
    assert job.prompt_file.stat().st_mode & 0o777 == 0o600
