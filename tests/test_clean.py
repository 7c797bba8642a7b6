"""`orchestrate clean [RUN]`: a finished run's worktrees and team branches go, on request.

Real runs of `orchestrate run` (fake agents, a real repository, a real Redis),
then `clean` as a user types it: from the folder where `run` was typed, which
need not be the repository.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import anyio
import pytest

from orchestrator.paths import StateLayout
from orchestrator.settings import Settings
from orchestrator.state.store import open_store
from tests.support.engine import files_for, plan_yaml, write_agent
from tests.support.gitrepo import GitRepo
from tests.support.redis import make_run

TEAMS = [("db", []), ("api", ["db"])]


def _cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _env(redis_url: str, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATE_")}
    return {**env, "ORCHESTRATE_REDIS_URL": redis_url, "ORCHESTRATE_KEY_PREFIX": prefix}


def _run_plan(git_repo: GitRepo, tmp_path: Path, env: dict[str, str]) -> tuple[str, str]:
    """`orchestrate run` typed in tmp_path (the plan's repo: is a folder below it)."""
    command, _ = write_agent(tmp_path / "agent", files_for(TEAMS))
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan_yaml(command, TEAMS) + f"repo: {git_repo.path.name}\n")
    proc = _cli("run", str(plan_file), "--backoff", "0.05", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = re.search(r"^run (\S+) succeeded", proc.stdout, re.M)
    assert found, proc.stdout
    return found.group(1), proc.stdout


def _branches(git_repo: GitRepo, run_id: str) -> list[str]:
    out = git_repo.git(
        "for-each-ref", "--format=%(refname:short)", f"refs/heads/orchestrate/{run_id}/"
    )
    return sorted(out.split())


def test_clean_removes_worktrees_and_team_branches_and_run_says_so(
    git_repo: GitRepo, redis_url: str, tmp_path: Path
) -> None:
    """After a run, its summary names `orchestrate clean RUN` in a form that works from
    where `run` was typed; it removes the run's worktrees and team branches and keeps the
    integration branch, which `git branch -D` can then delete (no "checked out at")."""
    env = _env(redis_url, f"t{uuid.uuid4().hex[:8]}")
    run_id, out = _run_plan(git_repo, tmp_path, env)
    hint = re.search(r"^clean: +(orchestrate clean .+?)  \(", out, re.M)
    assert hint, out
    assert "--state-dir" in hint.group(1)  # typed outside the repository
    worktrees = git_repo.path / ".orchestrate" / "worktrees" / run_id
    assert worktrees.is_dir()
    integration = f"orchestrate/{run_id}/integration"
    assert integration in _branches(git_repo, run_id) and len(_branches(git_repo, run_id)) == 3

    argv = shlex.split(hint.group(1))[1:]
    proc = _cli(*argv, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"run {run_id}: removed 3 worktree(s) and 2 branch(es)" in proc.stdout
    assert "kept " + integration in proc.stdout
    assert not worktrees.exists()
    assert _branches(git_repo, run_id) == [integration]
    assert git_repo.git("worktree", "list", "--porcelain").count("worktree ") == 1
    git_repo.git("branch", "-D", integration)

    again = _cli(*argv, cwd=tmp_path, env=env)  # twice is fine
    assert again.returncode == 0, again.stderr
    assert f"run {run_id}: removed 0 worktree(s) and 0 branch(es)" in again.stdout


def test_clean_all_without_a_run_cleans_every_finished_run_and_the_result_branch(
    git_repo: GitRepo, redis_url: str, tmp_path: Path
) -> None:
    """`orchestrate clean --all` in the repository: every finished run's worktrees and
    branches, the integration branch too."""
    env = _env(redis_url, f"t{uuid.uuid4().hex[:8]}")
    first, _ = _run_plan(git_repo, tmp_path, env)
    second, _ = _run_plan(git_repo, tmp_path, env)
    proc = _cli("clean", "--all", cwd=git_repo.path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for run_id in (first, second):
        assert f"run {run_id}: removed 3 worktree(s) and 3 branch(es)" in proc.stdout
        assert _branches(git_repo, run_id) == []
    assert git_repo.user_view().branch == "main"


@pytest.mark.anyio
async def test_clean_refuses_a_run_that_is_not_finished_or_is_live(
    settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    """A run still running (or pending, interrupted) is refused in one line, exit 2, and
    so is a finished run that a live orchestrator holds; `clean` without RUN skips them."""
    (tmp_path / ".orchestrate").mkdir()
    env = _env(redis_url, settings.key_prefix)
    layout_root = tmp_path / ".orchestrate"
    async with open_store(settings, StateLayout(layout_root)) as store:
        pending = await make_run(store, "demo-pending", teams=("db",))
        held = await make_run(store, "demo-held", teams=("db",))
        async with store.lease(held) as lease:
            await store.run_transition(held, "failed", epoch=lease.epoch, reason="test")

            def clean(*args: str) -> subprocess.CompletedProcess[str]:
                return _cli("clean", *args, cwd=tmp_path, env=env)

            for run_id, why in ((pending, "is pending, not finished"), (held, "live")):
                proc = await anyio.to_thread.run_sync(clean, run_id)
                assert proc.returncode == 2, proc.stdout + proc.stderr
                assert why in proc.stderr and proc.stderr.count("\n") == 1
                assert "Traceback" not in proc.stderr
            every = await anyio.to_thread.run_sync(clean)
            assert every.returncode == 0, every.stderr
            assert f"skipped run {pending}: pending, not finished" in every.stdout
            assert f"skipped run {held} is being driven by a live orchestrator" in every.stdout


def test_the_resume_hint_names_the_state_folder_when_typed_elsewhere(
    git_repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupted run whose repository is elsewhere: the printed `resume` command
    carries `--state-dir`, so it works from the folder where `run` was typed; typed in
    the repository it is the short form."""
    from orchestrator.cli._run import _summary, state_hint
    from orchestrator.run.engine import RunResult

    layout = git_repo.state_layout()
    result = RunResult("demo-1", "interrupted", reason="interrupted")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    hint = state_hint(layout)
    assert hint == f" --state-dir {shlex.quote(str(layout.root))}"
    assert f"resume:   orchestrate resume demo-1{hint}" in _summary(result, hint=hint)
    monkeypatch.chdir(git_repo.path)
    assert state_hint(layout) == ""
