"""The run's budget, fed by the cost an agent CLI reports, stops new teams — also after a resume.

The agent is a stand-in for Claude Code (a real process printing Claude Code's
stream-json result line with ``total_cost_usd``), read by the real claude-code
adapter, so the dollars travel the same path as a real agent's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import redis

from tests.support.gitrepo import GitRepo

ORCHESTRATE = [sys.executable, "-m", "orchestrator"]

FAKE_CLAUDE = """\
import json, os
team = os.environ["ORCHESTRATE_TEAM"]
open(team + ".txt", "w").write(team + "\\n")
print(json.dumps({"type": "system", "subtype": "init", "session_id": "s-" + team}))
print(json.dumps({
    "type": "result", "subtype": "success", "is_error": False, "result": team + " done",
    "session_id": "s-" + team, "total_cost_usd": 0.6,
    "usage": {"input_tokens": 100, "output_tokens": 50},
}))
"""

PLAN = """\
version: 1
name: budget
repo: {repo}
budget: {{usd: 1.0}}
defaults: {{agent: claude-code, retries: 0, timeout: 1m}}
agents:
  claude-code: {{command: [{py}, {script}]}}
teams:
  - {{id: a, task: first, deliverables: [a.txt]}}
  - {{id: b, task: second, deliverables: [b.txt], depends_on: [a]}}
  - {{id: c, task: third, deliverables: [c.txt], depends_on: [b]}}
"""


def orchestrate(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ORCHESTRATE, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_spent_budget_stops_new_teams_and_stays_spent_on_resume(
    git_repo: GitRepo, redis_url: str, tmp_path: Path
) -> None:
    """a and b cost $0.60 each: with a $1.00 budget c never starts, the run fails saying
    why, and a resume remembers what was spent (c still does not start)."""
    script = tmp_path / "fake_claude.py"
    script.write_text(FAKE_CLAUDE)
    plan_file = git_repo.path.parent / "plan.yaml"
    plan_file.write_text(PLAN.format(repo=git_repo.path.name, py=sys.executable, script=script))
    prefix = f"t{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "ORCHESTRATE_REDIS_URL": redis_url, "ORCHESTRATE_KEY_PREFIX": prefix}

    run = orchestrate("run", str(plan_file), "--backoff", "0", env=env, cwd=git_repo.path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "budget is spent: $1.20 of $1.00" in run.stdout

    status = orchestrate("status", "--json", env=env, cwd=git_repo.path)
    board = json.loads(status.stdout)
    teams = {t["id"]: t for t in board["teams"]}
    assert teams["a"]["status"] == teams["b"]["status"] == "succeeded"
    assert teams["c"]["attempt"] == 0 and teams["c"]["status"] != "succeeded"
    assert abs(board["cost_usd"] - 1.2) < 1e-9

    resumed = orchestrate("resume", "--backoff", "0", env=env, cwd=git_repo.path)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert "budget is spent: $1.20 of $1.00" in resumed.stdout
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        run_id = board["run_id"]
        assert client.hget(f"{prefix}:{{{run_id}}}:team:c", "attempt") in (None, "0")
    finally:
        client.close()
    assert not (git_repo.path / "c.txt").exists()
