"""The run's budget, fed by the cost an agent CLI reports, pauses the run — also after a
resume — until a resume raises it.

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


def test_spent_budget_pauses_the_run_and_a_raise_on_resume_finishes_it(
    git_repo: GitRepo, redis_url: str, tmp_path: Path
) -> None:
    """a and b cost $0.60 each: with a $1.00 budget c never starts and the run ends
    `paused (budget)` (exit 4) saying what was spent; a plain resume remembers it (still
    paused, c not started); `resume --budget-usd 3` raises it and c runs (exit 0)."""
    script = tmp_path / "fake_claude.py"
    script.write_text(FAKE_CLAUDE)
    plan_file = git_repo.path.parent / "plan.yaml"
    plan_file.write_text(PLAN.format(repo=git_repo.path.name, py=sys.executable, script=script))
    prefix = f"t{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "ORCHESTRATE_REDIS_URL": redis_url, "ORCHESTRATE_KEY_PREFIX": prefix}

    run = orchestrate("run", str(plan_file), "--backoff", "0", env=env, cwd=git_repo.path)
    assert run.returncode == 4, run.stdout + run.stderr
    assert "paused (budget): the run's budget is spent: $1.20 of $1.00" in run.stdout
    assert "--budget-usd" in run.stdout

    status = orchestrate("status", "--json", env=env, cwd=git_repo.path)
    board = json.loads(status.stdout)
    assert board["status"] == "paused"
    teams = {t["id"]: t for t in board["teams"]}
    assert teams["a"]["status"] == teams["b"]["status"] == "succeeded"
    assert teams["c"]["attempt"] == 0 and teams["c"]["status"] == "pending"
    assert abs(board["cost_usd"] - 1.2) < 1e-9

    resumed = orchestrate("resume", "--backoff", "0", env=env, cwd=git_repo.path)
    assert resumed.returncode == 4, resumed.stdout + resumed.stderr
    assert "budget is spent: $1.20 of $1.00" in resumed.stdout
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        run_id = board["run_id"]
        assert client.hget(f"{prefix}:{{{run_id}}}:team:c", "attempt") in (None, "0")
    finally:
        client.close()
    assert not (git_repo.path / "c.txt").exists()

    too_low = orchestrate("resume", "--budget-usd", "1.1", env=env, cwd=git_repo.path)
    assert too_low.returncode == 2
    assert "has spent $1.20: --budget-usd must be more" in too_low.stderr

    raised = orchestrate(
        "resume", "--budget-usd", "3", "--backoff", "0", env=env, cwd=git_repo.path
    )
    assert raised.returncode == 0, raised.stdout + raised.stderr
    board = json.loads(orchestrate("status", "--json", env=env, cwd=git_repo.path).stdout)
    assert {t["status"] for t in board["teams"]} == {"succeeded"}
    assert abs(board["cost_usd"] - 1.8) < 1e-9


SLOW_CLAUDE = """\
import json, os, time
team = os.environ["ORCHESTRATE_TEAM"]
print(json.dumps({"type": "system", "subtype": "init", "session_id": "s-" + team}), flush=True)
if team == "slow":
    open(os.environ["PIDFILE"], "w").write(str(os.getpid()))
    time.sleep(60)
open(team + ".txt", "w").write(team + "\\n")
print(json.dumps({
    "type": "result", "subtype": "success", "is_error": False, "result": team + " done",
    "session_id": "s-" + team, "total_cost_usd": 1.5,
    "usage": {"input_tokens": 100, "output_tokens": 50},
}), flush=True)
"""

HARD_PLAN = """\
version: 1
name: hard
repo: {repo}
max_parallel: 2
budget: {{usd: 1.0, hard: true}}
defaults: {{agent: claude-code, retries: 0, timeout: 2m}}
agents:
  claude-code: {{command: [{py}, {script}], env: {{PIDFILE: {pidfile}}}}}
teams:
  - {{id: slow, task: slow, deliverables: [slow.txt]}}
  - {{id: quick, task: quick, deliverables: [quick.txt]}}
"""


def test_a_hard_budget_stops_the_running_agents(
    git_repo: GitRepo, redis_url: str, tmp_path: Path
) -> None:
    """With `hard: true`, quick's $1.50 spends the $1.00 budget: slow's agent (still running)
    is stopped at once, not waited for; the run is paused (budget), slow cancelled saying why."""
    import time

    import psutil

    script = tmp_path / "slow_claude.py"
    script.write_text(SLOW_CLAUDE)
    pidfile = tmp_path / "slow.pid"
    plan_file = git_repo.path.parent / "plan.yaml"
    plan_file.write_text(
        HARD_PLAN.format(repo=git_repo.path.name, py=sys.executable, script=script, pidfile=pidfile)
    )
    env = {
        **os.environ,
        "ORCHESTRATE_REDIS_URL": redis_url,
        "ORCHESTRATE_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
    }
    started = time.monotonic()
    run = orchestrate("run", str(plan_file), "--backoff", "0", env=env, cwd=git_repo.path)
    assert time.monotonic() - started < 45  # slow's 60 s were not waited out
    assert run.returncode == 4, run.stdout + run.stderr
    board = json.loads(orchestrate("status", "--json", env=env, cwd=git_repo.path).stdout)
    teams = {t["id"]: t for t in board["teams"]}
    assert teams["slow"]["status"] == "cancelled"
    assert "hard" in str(teams["slow"]["reason"])
    pid = int(pidfile.read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
