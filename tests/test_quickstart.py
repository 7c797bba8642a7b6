"""`orchestrate quickstart`: a demo repository that validates and whose agent works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.plan.load import load_plan


def orchestrate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    where = tmp_path_factory.mktemp("qs")
    proc = orchestrate("quickstart", "demo", cwd=where)
    return where / "demo", proc


def test_quickstart_creates_a_committed_valid_repo(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """The demo is a git repo with one commit, a clean tree and a valid plan; next steps printed."""
    root, proc = demo
    assert proc.returncode == 0, proc.stderr
    assert "cd demo && orchestrate plan plan.yaml && orchestrate run plan.yaml" in proc.stdout
    log = subprocess.run(["git", "log", "--oneline"], cwd=root, capture_output=True, text=True)
    assert len(log.stdout.splitlines()) == 1
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True
    )
    assert status.stdout == ""
    plan = load_plan(root / "plan.yaml").plan
    assert 4 <= len(plan.teams) <= 6
    assert plan.isolation == "worktree" and plan.integration.test


def test_quickstart_refuses_non_empty_dir(tmp_path: Path) -> None:
    """An existing non-empty directory is never touched."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine")
    proc = orchestrate("quickstart", "mine", cwd=tmp_path)
    assert proc.returncode == 2
    assert "not an empty directory" in proc.stderr
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["keep.txt"]


def test_quickstart_into_an_impossible_path_is_one_line(tmp_path: Path) -> None:
    """`quickstart /dev/null/x` (a file where a folder should be) says so in one line,
    exit 2, never a traceback."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for target in ("/dev/null/x", str(blocker / "demo")):
        proc = orchestrate("quickstart", target, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stderr.count("\n") == 1 and "Not a directory" in proc.stderr


def test_scripted_agent_builds_everything_and_fails_once(
    demo: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """Run by hand in plan order, the agent fails storage once, then the integration test passes."""
    root, _ = demo
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(root), str(work)], check=True)
    plan = load_plan(root / "plan.yaml").plan
    env = {**os.environ, "QUICKSTART_AGENT_PAUSE": "0"}
    from orchestrator.plan.graph import topo_order

    failures = []
    for team in topo_order(plan):
        for attempt in (1, 2):
            run = subprocess.run(
                [sys.executable, "agent.py", team, str(attempt)],
                cwd=work,
                env=env,
                check=False,
                capture_output=True,
                text=True,
            )
            if run.returncode == 0:
                break
            failures.append(team)
        for check in plan.team(team).checks:
            assert isinstance(check, str)
            subprocess.run(
                check.replace("python3", sys.executable), shell=True, cwd=work, check=True
            )
    assert failures == ["storage"]
    test = plan.integration.test
    assert isinstance(test, str)
    result = subprocess.run(
        test.replace("python3", sys.executable),
        shell=True,
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
