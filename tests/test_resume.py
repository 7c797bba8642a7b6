"""`orchestrate resume` after a kill -9: re-attach, judge, redo, and the plan copy."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support.crashkit import (
    branch_files,
    kill9,
    make_fixture,
    run_leftovers,
    succeeded_counts,
    wait_for,
)
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.slow

THREE = [("db", []), ("api", ["db"]), ("web", ["db"])]


def _fixture(git_repo: GitRepo, tmp_path: Path, redis_url: str, **specs: dict[str, object]):  # type: ignore[no-untyped-def]
    base = {t: {"sleep": 0.3} for t, _ in THREE}
    for team, more in specs.items():
        base[team] = {**base[team], **more}
    return make_fixture(
        git_repo,
        tmp_path / "kit",
        THREE,
        specs=base,
        env={"ORCHESTRATE_REDIS_URL": redis_url, "ORCHESTRATE_LEASE_TTL": "2"},
    )


def test_resume_reattaches_a_running_agent_after_kill_9(
    git_repo: GitRepo, tmp_path: Path, redis_url: str
) -> None:
    """kill -9 of `orchestrate run` while agents run: resume follows them, starts none twice."""
    fx = _fixture(git_repo, tmp_path, redis_url, api={"sleep": 2.0}, web={"sleep": 2.0})
    try:
        run = fx.start("run", str(fx.plan_file), "--backoff", "0.05")
        run_id = fx.run_id()
        wait_for(lambda: fx.statuses(run_id)["api"] == "running", 30, "api running")
        wait_for(lambda: len(fx.starts_of()) >= 3, 30, "api and web started")
        kill9(run)
        done = fx.run("resume", run_id, "--backoff", "0.05")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "attached" in done.stdout
        assert fx.run_status(run_id) == "succeeded"
        starts = fx.starts_of()
        assert len(starts) == len({(t, a) for t, a, _ in starts}) == 3, starts
        assert succeeded_counts(fx.events(run_id)) == {"db": 1, "api": 1, "web": 1}
        files = branch_files(git_repo, f"orchestrate/{run_id}/integration")
        assert {"src/db.txt", "src/api.txt", "src/web.txt"} <= files
        logs = git_repo.path / ".orchestrate" / "runs" / run_id / "logs"
        assert run_leftovers(run_id, logs) == []
    finally:
        fx.kill_all()


def test_resume_ignores_an_edited_plan_and_refuses_one_changing_done_teams(
    git_repo: GitRepo, tmp_path: Path, redis_url: str
) -> None:
    """An edited plan file is reported and ignored; --plan changing a done team exits 2 naming
    it; --retry-failed gives a failed team fresh attempts."""
    fx = _fixture(git_repo, tmp_path, redis_url, api={"fail_once": str(tmp_path / "api.f")})
    text = fx.plan_file.read_text().replace("retries: 2", "retries: 0")
    fx.plan_file.write_text(text)
    try:
        first = fx.run("run", str(fx.plan_file), "--backoff", "0.05")
        assert first.returncode == 1, first.stdout + first.stderr
        run_id = fx.run_id()
        fx.plan_file.write_text(text.replace("Build db.", "Build db differently."))
        refused = fx.run("resume", run_id, "--plan", str(fx.plan_file))
        assert refused.returncode == 2
        assert "teams already done changed (db)" in refused.stderr
        again = fx.run("resume", run_id, "--retry-failed", "--backoff", "0.05")
        assert "changed since the run started" in again.stdout
        assert again.returncode == 0, again.stdout + again.stderr
        assert fx.run_status(run_id) == "succeeded"
    finally:
        fx.kill_all()


def test_after_a_resume_downstream_prompts_still_quote_upstream_summaries(
    git_repo: GitRepo, tmp_path: Path, redis_url: str
) -> None:
    """Ctrl-C after db succeeded, then resume: api's new prompt still has db's final message
    ("Their summary"), as a run that was never stopped would have given it."""
    fx = _fixture(git_repo, tmp_path, redis_url, api={"sleep": 30.0}, web={"sleep": 30.0})
    try:
        run = fx.start("run", str(fx.plan_file), "--backoff", "0.05")
        run_id = fx.run_id()
        wait_for(lambda: len(fx.starts_of()) >= 3, 30, "api and web started")
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=30) == 130, fx.out.read_text()
        assert fx.statuses(run_id)["db"] == "succeeded"
        spec = tmp_path / "kit" / "spec.json"
        spec.write_text(spec.read_text().replace("30.0", "0.2"))
        done = fx.run("resume", run_id, "--backoff", "0.05")
        assert done.returncode == 0, done.stdout + done.stderr
        prompts = git_repo.path / ".orchestrate" / "runs" / run_id / "prompts"
        first, again = (prompts / "api.1.md").read_text(), (prompts / "api.2.md").read_text()
        assert "Their summary:" in first and "done: db" in first
        assert "Their summary:" in again and "done: db" in again
    finally:
        fx.kill_all()


def test_sighup_leaves_the_agents_running_and_resume_reattaches_them(
    git_repo: GitRepo, tmp_path: Path, redis_url: str
) -> None:
    """SIGHUP (terminal closed, ssh dropped) to `orchestrate run`: exit 130, the run is
    `interrupted` (not shown running), its agents go on; `resume` re-attaches them (none
    starts twice) and finishes the run, leaving no process behind."""
    fx = _fixture(git_repo, tmp_path, redis_url, api={"sleep": 3.0}, web={"sleep": 3.0})
    try:
        run = fx.start("run", str(fx.plan_file), "--backoff", "0.05")
        run_id = fx.run_id()
        wait_for(lambda: len(fx.starts_of()) >= 3, 30, "api and web started")
        run.send_signal(signal.SIGHUP)
        assert run.wait(timeout=30) == 130, fx.out.read_text()
        assert fx.run_status(run_id) == "interrupted"
        assert "SIGHUP" in fx.out.read_text()
        logs = git_repo.path / ".orchestrate" / "runs" / run_id / "logs"
        assert run_leftovers(run_id, logs), "the agents should go on after a hang-up"
        status = fx.run("status", run_id)
        assert "interrupted" in status.stdout, status.stdout
        done = fx.run("resume", run_id, "--backoff", "0.05")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "attached" in done.stdout
        assert fx.run_status(run_id) == "succeeded"
        starts = fx.starts_of()
        assert len(starts) == len({t for t, _, _ in starts}) == 3, starts
        assert run_leftovers(run_id, logs) == []
    finally:
        fx.kill_all()
