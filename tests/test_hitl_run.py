"""The human in the loop, end to end: `orchestrate run` / `resume` / `approve` / `reject` as
separate processes on a real Redis and a real git repository, agents that are real processes.

Approval gates (a gate approved while `run` waits; one decided with no orchestrator
running, then `resume`; a rejection fed into the next prompt), worktree set-up and
copied files in both isolations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.support.gitrepo import GitRepo
from tests.test_notify import Hooked, server  # noqa: F401 - the webhook server fixture

pytestmark = pytest.mark.timeout(120)

EXIT_AWAITING_APPROVAL = 3

AGENT = """\
import os, sys, time
team, attempt, prompt_file, flag = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
prompt = open(prompt_file).read()
log = os.path.join(os.path.dirname(flag), "prompts")
os.makedirs(log, exist_ok=True)
open(os.path.join(log, f"{team}-{attempt}.md"), "w").write(prompt)
if team == "slow":  # holds the run open until the test says so
    deadline = time.monotonic() + 60
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.05)
open(team + ".txt", "w").write(team + " attempt " + attempt + "\\n")
print(team, "wrote", team + ".txt", flush=True)
"""


class Env:
    """One test's repository, Redis key prefix and helpers to run orchestrate."""

    def __init__(self, repo: GitRepo, redis_url: str, tmp_path: Path) -> None:
        self.repo = repo
        self.tmp = tmp_path
        self.flag = tmp_path / "go.flag"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATE_")}
        self.env |= {
            "ORCHESTRATE_REDIS_URL": redis_url,
            "ORCHESTRATE_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        }
        self.agent = tmp_path / "agent.py"
        self.agent.write_text(AGENT)

    def plan(self, teams: list[dict[str, object]], **top: object) -> Path:
        plan: dict[str, object] = {
            "version": 1,
            "name": "hitl",
            "repo": self.repo.path.name,
            "defaults": {"agent": "fake", "retries": 1, "timeout": "1m"},
            "agents": {
                "fake": {
                    "kind": "command",
                    "command": [
                        sys.executable,
                        str(self.agent),
                        "{team}",
                        "{attempt}",
                        "{prompt_file}",
                        str(self.flag),
                    ],
                }
            },
            "teams": teams,
            **top,
        }
        path = self.repo.path.parent / "plan.yaml"
        path.write_text(yaml.safe_dump(plan, sort_keys=False))
        return path

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator", *args],
            cwd=self.repo.path,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __call__(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", *args],
            cwd=self.repo.path,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def board(self) -> dict[str, object]:
        done = self("status", "--json")
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def teams(self) -> dict[str, dict[str, object]]:
        teams = self.board()["teams"]
        assert isinstance(teams, list)
        return {str(t["id"]): t for t in teams}

    def wait_for(self, team: str, status: str, timeout: float = 60) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self("status", "--json")  # fails until the run is recorded
            if done.returncode == 0:
                found = {t["id"]: t for t in json.loads(done.stdout)["teams"]}.get(team, {})
                if found.get("status") == status:
                    return dict(found)
            time.sleep(0.2)
        raise AssertionError(f"{team} never became {status}: {self.teams().get(team)}")

    def prompt(self, team: str, attempt: int) -> str:
        return (self.tmp / "prompts" / f"{team}-{attempt}.md").read_text()


@pytest.fixture
def hitl(git_repo: GitRepo, redis_url: str, tmp_path: Path) -> Env:
    return Env(git_repo, redis_url, tmp_path)


def test_gate_approved_from_another_process_while_run_waits(hitl: Env) -> None:
    """`api` waits for approval while `slow` still runs; `orchestrate approve` from another
    process lets `web` start in the same run, which then succeeds (exit 0)."""
    plan = hitl.plan(
        [
            {"id": "api", "task": "the api", "deliverables": ["api.txt"], "approval": True},
            {"id": "web", "task": "the web", "deliverables": ["web.txt"], "depends_on": ["api"]},
            {"id": "slow", "task": "slow", "deliverables": ["slow.txt"]},
        ]
    )
    run = hitl.start("run", str(plan), "--backoff", "0")
    try:
        api = hitl.wait_for("api", "awaiting_approval")
        run_id = str(hitl.board()["run_id"])
        assert api["approval"]["status"] == "awaiting"  # type: ignore[index]
        assert f"orchestrate approve {run_id} api" in str(api["approval"]["approve"])  # type: ignore[index]
        assert hitl.teams()["web"]["status"] == "pending"
        approved = hitl("approve", run_id, "api", "--note", "contract reviewed")
        assert approved.returncode == 0, approved.stderr
        assert "the orchestrator running" in approved.stdout
        hitl.wait_for("web", "succeeded")
        hitl.flag.write_text("go")
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, out + err
    teams = hitl.teams()
    assert {t["status"] for t in teams.values()} == {"succeeded"}
    events = hitl("report", run_id, "--format", "json")
    assert events.returncode == 0, events.stderr


def test_gate_decided_with_no_orchestrator_then_resume(hitl: Env, server: Hooked) -> None:  # noqa: F811
    """With only a gate left, `run` exits 3 saying what to run (and posts the awaiting_approval
    webhook); the approval is given while no orchestrator runs; `resume` picks it up and
    finishes the run."""
    plan = hitl.plan(
        [
            {"id": "api", "task": "the api", "deliverables": ["api.txt"], "approval": True},
            {"id": "web", "task": "the web", "deliverables": ["web.txt"], "depends_on": ["api"]},
        ],
        notify=[{"url": f"{server.url}/hook", "events": ["awaiting_approval"]}],
    )
    first = hitl("run", str(plan), "--backoff", "0")
    assert first.returncode == EXIT_AWAITING_APPROVAL, first.stdout + first.stderr
    run_id = str(hitl.board()["run_id"])
    posted = [body for path, body in server.received if path == "/hook"]
    assert [(b["event"], b["team"]) for b in posted] == [("awaiting_approval", "api")]
    assert posted[0]["approve"] == f"orchestrate approve {run_id} api"
    assert f"orchestrate approve {run_id} api" in first.stdout
    assert f"orchestrate resume {run_id}" in first.stdout
    assert hitl.teams()["api"]["status"] == "awaiting_approval"
    assert f"waits for approval: orchestrate approve {run_id} api" in hitl("status").stdout
    assert hitl("approve", run_id, "api").returncode == 0
    resumed = hitl("resume", run_id, "--backoff", "0")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert hitl.teams()["web"]["status"] == "succeeded"


def test_rejection_is_the_next_attempts_feedback_then_failure_when_spent(hitl: Env) -> None:
    """Rejected once: attempt 2's prompt carries the reason; rejected again with no retries
    left: the team fails with the reason, its dependents are blocked."""
    plan = hitl.plan(
        [
            {"id": "api", "task": "the api", "deliverables": ["api.txt"], "approval": True},
            {"id": "web", "task": "the web", "deliverables": ["web.txt"], "depends_on": ["api"]},
        ]
    )
    assert hitl("run", str(plan), "--backoff", "0").returncode == EXIT_AWAITING_APPROVAL
    run_id = str(hitl.board()["run_id"])
    reason = "CORS is not validated on staging"
    assert hitl("reject", run_id, "api", "--reason", reason).returncode == 0
    again = hitl("resume", run_id, "--backoff", "0")
    assert again.returncode == EXIT_AWAITING_APPROVAL, again.stdout + again.stderr
    assert reason in hitl.prompt("api", 2)
    assert reason not in hitl.prompt("api", 1)
    assert hitl("reject", run_id, "api", "--reason", "still not").returncode == 0
    last = hitl("resume", run_id, "--backoff", "0")
    assert last.returncode == 1, last.stdout + last.stderr
    teams = hitl.teams()
    assert teams["api"]["status"] == "failed"
    assert "still not" in str(teams["api"]["reason"])
    assert teams["web"]["status"] == "blocked"


@pytest.mark.parametrize("isolation", ["worktree", "shared"])
def test_setup_and_copy_in_each_isolation(hitl: Env, isolation: str) -> None:
    """`copy: [.env]` puts the user's untracked .env in the agent's worktree (never committed,
    its values redacted); `setup:` runs there first, its output in the team's log."""
    secret = "postgres://app:hunter2-" + uuid.uuid4().hex[:8] + "@db/app"
    hitl.repo.write({".env": f"DATABASE_URL={secret}\n"})
    show = "import pathlib; print('deps ready'); print(pathlib.Path('.env').read_text())"
    setup = [sys.executable, "-c", show]
    plan = hitl.plan(
        [
            {
                "id": "api",
                "task": "the api",
                "deliverables": ["api.txt"],
                "checks": ["test -f .env"],
            },
            {"id": "web", "task": "the web", "deliverables": ["web.txt"], "depends_on": ["api"]},
            {"id": "docs", "task": "the docs", "deliverables": ["docs.txt"]},  # beside api
        ],
        isolation=isolation,
        setup=[setup],
        copy=[".env"],
    )
    done = hitl("run", str(plan), "--backoff", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    logs = hitl("logs")
    assert "deps ready" in logs.stdout
    assert "DATABASE_URL=***" in logs.stdout
    assert secret not in logs.stdout
    branches = hitl.repo.git("branch", "--list", "orchestrate/*", "--format=%(refname:short)")
    for branch in branches.split():
        files = hitl.repo.git("ls-tree", "-r", "--name-only", branch)
        assert ".env" not in files.split(), branch


def test_failing_setup_fails_the_attempt_with_its_output(hitl: Env) -> None:
    """A set-up command that fails ends the attempt, its output the reason; no agent runs."""
    plan = hitl.plan(
        [
            {
                "id": "api",
                "task": "the api",
                "deliverables": ["api.txt"],
                "retries": 0,
                "setup": ["echo 'npm ERR! missing lockfile'; exit 7"],
            }
        ],
    )
    done = hitl("run", str(plan), "--backoff", "0")
    assert done.returncode == 1, done.stdout + done.stderr
    api = hitl.teams()["api"]
    assert api["status"] == "failed"
    assert "failed (exit 7)" in str(api["reason"])
    assert not (hitl.tmp / "prompts" / "api-1.md").exists()


FAKE_CLAUDE = """\
import json, os, sys, time
attempt = int(os.environ["ORCHESTRATE_ATTEMPT"])
session = "s-" + os.environ["ORCHESTRATE_TEAM"]
print(json.dumps({"type": "system", "subtype": "init", "session_id": session}), flush=True)
if attempt == 1:
    resets = int(time.time()) + 3
    print(json.dumps({"type": "rate_limit_event", "session_id": session,
                      "rate_limit_info": {"status": "rejected", "resetsAt": resets,
                                          "rateLimitType": "five_hour"}}), flush=True)
    print(json.dumps({"type": "result", "subtype": "success", "is_error": True,
                      "session_id": session, "api_error_status": 429,
                      "result": "You've hit your 5-hour limit"}), flush=True)
    sys.exit(1)
open("api.txt", "w").write("api\\n")
print(json.dumps({"type": "result", "subtype": "success", "is_error": False,
                  "session_id": session, "result": "api written", "total_cost_usd": 0.01,
                  "usage": {"input_tokens": 10, "output_tokens": 5}}), flush=True)
"""


def test_usage_limit_pauses_the_provider_across_a_resume(hitl: Env) -> None:
    """Claude's usage limit on api's first attempt: api is `paused` (the board says until
    when) while `web`, another provider, goes on; the run is stopped and resumed during the
    pause; after the reset api's next attempt succeeds although it had no retries left."""
    fake = hitl.tmp / "fake_claude.py"
    fake.write_text(FAKE_CLAUDE)
    plan = hitl.plan(
        [
            {
                "id": "api",
                "agent": "claude-code",
                "task": "the api",
                "deliverables": ["api.txt"],
                "retries": 0,
            },
            {"id": "web", "task": "the web", "deliverables": ["web.txt"]},
        ],
        max_parallel=1,
    )
    data = yaml.safe_load(plan.read_text())
    data["agents"]["claude-code"] = {"command": [sys.executable, str(fake)]}
    plan.write_text(yaml.safe_dump(data, sort_keys=False))
    hitl.flag.write_text("go")  # web does not wait
    run = hitl.start("run", str(plan), "--backoff", "0")
    try:
        api = hitl.wait_for("api", "paused")
        assert api["paused_until"] is not None
        until = float(str(api["paused_until"]))
        assert until > time.time()
        assert "anthropic usage limit: paused until" in str(api["reason"])
        hitl.wait_for("web", "succeeded")  # another provider goes on, in the only slot
        shown = hitl("status")
        assert "paused until" in shown.stdout
        run.terminate()
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 130, out + err
    assert hitl.teams()["api"]["status"] == "paused"
    resumed = hitl("resume", "--backoff", "0")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    api = hitl.teams()["api"]
    assert api["status"] == "succeeded" and api["attempt"] == 2
    assert float(str(api["started"])) >= until  # no agent of the provider before the reset
