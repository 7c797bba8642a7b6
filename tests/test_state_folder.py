"""The state folder: its mode is the user's, and a damaged one is refused in one line.

A folder orchestrate did not create keeps its mode (``--state-dir /tmp`` must not
lock other users out); ``.orchestrate`` or one of its folders replaced by a file is
one line and exit 2 before anything runs; damage in the middle of a run fails the
teams it hits and the run says ``failed``, never ``running`` forever.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from orchestrator.errors import GitError, UsageError
from orchestrator.paths import StateLayout
from orchestrator.plan.load import load_plan
from orchestrator.run.engine import EngineOptions, start_run
from orchestrator.state.runs import RunInfo
from orchestrator.state.store import Store
from tests.support.engine import files_for, plan_yaml, write_agent
from tests.support.gitrepo import GitRepo

FAST = EngineOptions(backoff_initial=0.01, backoff_max=0.05, backoff_jitter=0.01, kill_grace=1.0)
TEAMS = [("db", []), ("api", ["db"])]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cli(*args: str, cwd: Path, redis_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATE_")}
    if redis_url is not None:
        env["ORCHESTRATE_REDIS_URL"] = redis_url
        env["ORCHESTRATE_KEY_PREFIX"] = f"t{uuid.uuid4().hex[:8]}"
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


def _plan(git_repo: GitRepo, tmp_path: Path, **top: object) -> Path:
    command, _ = write_agent(tmp_path / "agent", files_for(TEAMS))
    plan_file = git_repo.path.parent / "plan.yaml"
    plan_file.write_text(
        plan_yaml(command, TEAMS, defaults={"retries": 0}, **top) + f"repo: {git_repo.path.name}\n"
    )
    return plan_file


def test_an_existing_folder_keeps_its_mode_and_a_new_one_is_private(tmp_path: Path) -> None:
    """Only a folder orchestrate creates is made 0700; `--state-dir` on an existing folder
    (a shared one, like /tmp) leaves its mode alone."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    StateLayout(shared).ensure()
    assert _mode(shared) == 0o1777
    fresh = StateLayout(tmp_path / "fresh" / ".orchestrate").ensure()
    assert _mode(fresh.root) == 0o700


def test_run_with_state_dir_on_an_existing_folder_keeps_its_mode(
    git_repo: GitRepo, redis_url: str, tmp_path: Path
) -> None:
    """`orchestrate run --state-dir DIR` on a folder the user made: the run works and the
    folder's mode is what it was (orchestrate's own folders inside it are private)."""
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o755)
    proc = _cli(
        "run", str(_plan(git_repo, tmp_path)), "--state-dir", str(state),
        cwd=tmp_path, redis_url=redis_url,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _mode(state) == 0o755
    assert _mode(state / "runs") & 0o077 == 0


@pytest.mark.parametrize("damage", [".orchestrate", "redis", "runs", "worktrees"])
def test_a_damaged_state_folder_is_one_line_and_exit_2(
    git_repo: GitRepo, redis_url: str, tmp_path: Path, damage: str
) -> None:
    """`.orchestrate` (or a folder in it) being a file: `run`, `status` and `resume` say so
    in one line, exit 2, no traceback, and nothing is recorded."""
    state = git_repo.path / ".orchestrate"
    if damage == ".orchestrate":
        state.write_text("not a folder\n")
    else:
        state.mkdir()
        (state / damage).write_text("not a folder\n")
    plan = _plan(git_repo, tmp_path)
    for args, url in (
        (["run", str(plan)], redis_url),
        (["run", str(plan)], None),
        (["status"], None),
        (["runs"], None),
        (["resume"], None),
        (["report"], None),
    ):
        proc = _cli(*args, cwd=git_repo.path, redis_url=url)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.count("\n") == 1 and "not a folder" in proc.stderr, proc.stderr
    assert not (state / "runs").is_dir() or not any((state / "runs").iterdir())


@pytest.mark.anyio
async def test_worktrees_damaged_mid_run_fail_the_teams_and_the_run_says_so(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """`worktrees/` replaced by a file once the run is recorded: the teams fail with the
    reason (no traceback), and the run ends `failed`, not `running` forever."""
    layout = git_repo.state_layout()
    loaded = load_plan(_plan(git_repo, tmp_path))

    def damage(info: RunInfo) -> None:
        shutil.rmtree(layout.root / "worktrees", ignore_errors=True)
        (layout.root / "worktrees").write_text("not a folder\n")

    result = await start_run(loaded, store=store, layout=layout, options=FAST, on_created=damage)
    assert result.status == "failed"
    assert (await store.get_run(result.run_id)).status == "failed"
    db = await store.get_team(result.run_id, "db")
    assert db.status == "failed" and "Not a directory" in (db.error or db.reason or "")


@pytest.mark.anyio
async def test_an_error_no_team_catches_leaves_the_run_failed_not_running(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """A shared-isolation run whose worktree cannot be made stops with one error, and the
    run is recorded `failed` with that error as its reason (resumable), never `running`."""
    layout = git_repo.state_layout()
    loaded = load_plan(_plan(git_repo, tmp_path, isolation="shared"))
    made: list[str] = []

    def damage(info: RunInfo) -> None:
        made.append(info.run_id)
        shutil.rmtree(layout.root / "worktrees", ignore_errors=True)
        (layout.root / "worktrees").write_text("not a folder\n")

    with pytest.raises((GitError, UsageError)):
        await start_run(loaded, store=store, layout=layout, options=FAST, on_created=damage)
    run = await store.get_run(made[0])
    assert run.status == "failed"
    assert "Not a directory" in run.meta.get("reason", "")
