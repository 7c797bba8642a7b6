"""`orchestrate cancel`: stops a live run's agents from another terminal; resume continues."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.crashkit import kill9, make_fixture, run_leftovers, wait_for
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.slow


def test_cancel_stops_a_live_run_and_resume_finishes_it(
    git_repo: GitRepo, tmp_path: Path, redis_url: str
) -> None:
    """cancel: the live `run` stops (exit 130), no process of the run is left, the run is
    cancelled and each team's reason (and the run's summary) says it was cancelled and by
    whom, not "interrupted"; `resume` then finishes it (exit 0)."""
    teams = [("db", []), ("api", [])]
    fx = make_fixture(
        git_repo,
        tmp_path / "kit",
        teams,
        specs={"db": {"sleep": 30.0}, "api": {"sleep": 30.0}},
        env={"ORCHESTRATE_REDIS_URL": redis_url},
    )
    try:
        run = fx.start("run", str(fx.plan_file))
        run_id = fx.run_id()
        wait_for(lambda: len(fx.starts_of()) == 2, 30, "both agents started")
        done = fx.run("cancel", run_id, "--grace", "1")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"run {run_id} cancelled" in done.stdout
        assert run.wait(timeout=30) == 130, fx.out.read_text()
        assert fx.run_status(run_id) == "cancelled"
        assert set(fx.statuses(run_id).values()) == {"cancelled"}
        r = fx.redis()
        try:
            reasons = {r.hget(fx.keys.team(run_id, t), "reason") for t, _ in teams}
        finally:
            r.close()
        assert len(reasons) == 1 and reasons.pop().startswith("cancelled by "), reasons
        said = fx.out.read_text()
        assert f"run {run_id} cancelled by " in said and "interrupted" not in said, said
        logs = git_repo.path / ".orchestrate" / "runs" / run_id / "logs"
        assert run_leftovers(run_id, logs) == []
        (tmp_path / "kit" / "spec.json").write_text(
            (tmp_path / "kit" / "spec.json").read_text().replace("30.0", "0.2")
        )
        again = fx.run("resume", run_id)
        assert again.returncode == 0, again.stdout + again.stderr
        assert fx.run_status(run_id) == "succeeded"
        assert run_leftovers(run_id, logs) == []
        # The cancelled attempt is not counted: the prompt and the board say the same.
        prompt = git_repo.path / ".orchestrate" / "runs" / run_id / "prompts" / "db.2.md"
        assert "This is attempt 2 of at most 4." in prompt.read_text()
        status = fx.run("status", run_id, "--json")
        rows = {t["id"]: t for t in json.loads(status.stdout)["teams"]}
        assert (rows["db"]["attempt"], rows["db"]["max_attempts"]) == (2, 4), rows
    finally:
        fx.kill_all()


def test_cancel_with_the_orchestrator_dead_kills_its_agents(
    git_repo: GitRepo, tmp_path: Path, redis_url: str
) -> None:
    """cancel after the orchestrator was killed -9: its agents (still running under their
    supervisors) are stopped through the recorded pids."""
    fx = make_fixture(
        git_repo,
        tmp_path / "kit",
        [("db", [])],
        specs={"db": {"sleep": 30.0}},
        env={"ORCHESTRATE_REDIS_URL": redis_url},
    )
    try:
        run = fx.start("run", str(fx.plan_file))
        run_id = fx.run_id()
        wait_for(lambda: len(fx.starts_of()) == 1, 30, "the agent started")
        kill9(run)
        logs = git_repo.path / ".orchestrate" / "runs" / run_id / "logs"
        assert run_leftovers(run_id, logs), "the agent should outlive its orchestrator"
        done = fx.run("cancel", run_id, "--grace", "1")
        assert done.returncode == 0, done.stdout + done.stderr
        assert run_leftovers(run_id, logs) == []
        assert fx.run_status(run_id) == "cancelled"
    finally:
        fx.kill_all()
