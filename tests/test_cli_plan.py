"""The plan commands as a user runs them: validate, plan, init, schema."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN_PATH = os.pathsep.join(
    [str(Path(sys.executable).parent), str(Path(shutil.which("git") or "/usr/bin/git").parent)]
)

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}

PLAN = """\
version: 1
name: shop
max_parallel: 3
agents:
  scripted:
    kind: command
    command: definitely-not-installed-agent --go
teams:
  - id: db
    task: database
    estimate: 20m
    deliverables: [src/db.py]
  - id: auth
    task: auth
    estimate: 30m
    agent: scripted
    deliverables: ["src/*.py"]
    depends_on: [db]
  - id: api
    task: api
    estimate: 10m
    deliverables: [src/api.py]
    depends_on: [db]
"""


def orchestrate(*args: str, cwd: Path, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clirepo")
    for args in (
        ["init", "-q", "--initial-branch=main"],
        ["commit", "-q", "--allow-empty", "-m", "i"],
    ):
        subprocess.run(["git", *args], cwd=root, env=GIT_ENV, check=True)
    (root / "plan.yaml").write_text(PLAN)
    return root


def test_validate_ok_prints_summary(repo: Path) -> None:
    """A valid plan: exit 0 and a one-line summary."""
    proc = orchestrate("validate", "plan.yaml", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("plan.yaml: ok: plan 'shop', 3 team(s) in 2 wave(s)")


def test_validate_bad_plan_one_line_per_problem(repo: Path) -> None:
    """A bad plan: exit 2, each problem as file:line:col: field: message."""
    bad = repo / "bad.yaml"
    bad.write_text(PLAN.replace("depends_on: [db]\n  - id: api", "depends_on: [dbb]\n  - id: api"))
    proc = orchestrate("validate", str(bad), cwd=repo)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"{bad}:18:18: teams[1].depends_on: unknown team 'dbb' (did you mean 'db'?)",
        "orchestrate: the plan has 1 problem(s)",
    ]


def test_plan_shows_waves_path_timeline_and_warnings(repo: Path) -> None:
    """`plan` prints waves, the critical path, a timeline and the two kinds of warning."""
    proc = orchestrate("plan", "plan.yaml", cwd=repo, path=BIN_PATH)
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())
    assert "Critical path: db -> auth ~50m" in out
    assert "T+00 db / T+20 auth, api / T+50 done" in out
    assert "teams 'auth' and 'api' may run at the same time and both deliver 'src/*.py'" in out
    assert (
        "agent 'scripted': executable 'definitely-not-installed-agent' is not on PATH (used by"
        in out
    )
    assert "agent 'claude-code': executable 'claude' is not on PATH (used by" in out


def test_schema_is_json_schema_of_plan(repo: Path) -> None:
    """`schema` prints a JSON Schema an editor can use."""
    proc = orchestrate("schema", cwd=repo)
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    assert {"version", "name", "teams", "integration"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_init_writes_valid_starter_and_refuses_overwrite(tmp_path: Path) -> None:
    """`init` writes a plan that validates, names the CLIs found, and never overwrites one."""
    subprocess.run(["git", "init", "-q", "--initial-branch=main"], cwd=tmp_path, check=True)
    subprocess.run(
        ["git", "commit", "-q", "--allow-empty", "-m", "i"], cwd=tmp_path, env=GIT_ENV, check=True
    )
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "codex"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    (tmp_path / "sub").mkdir()
    path = f"{bindir}{os.pathsep}{BIN_PATH}"
    proc = orchestrate("init", cwd=tmp_path / "sub", path=path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "plan.yaml").read_text()
    assert "# Agent CLIs found on PATH: codex" in text
    assert "  agent: codex" in text
    assert orchestrate("validate", "plan.yaml", cwd=tmp_path).returncode == 0
    again = orchestrate("init", cwd=tmp_path, path=path)
    assert again.returncode == 2
    assert "already exists; not overwriting it" in again.stderr
    assert (tmp_path / "plan.yaml").read_text() == text


def test_init_outside_git_refuses(tmp_path: Path) -> None:
    """`init` outside a repository says so and writes nothing."""
    proc = orchestrate("init", cwd=tmp_path)
    assert proc.returncode == 2
    assert "not inside a git repository" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_names_the_arguments_as_users_write_them(tmp_path: Path) -> None:
    """`--help` of validate, plan, quickstart and import shows PLAN, DIR and PLAN.md, not
    Python parameter names like `plan_file`."""
    for cmd, name in (("validate", "PLAN"), ("plan", "PLAN"), ("quickstart", "DIR"),
                      ("import", "PLAN.md")):  # fmt: skip
        p = orchestrate(cmd, "--help", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        usage = p.stdout.splitlines()[0]
        assert name in usage and "_" not in usage.split("[OPTIONS]")[1], usage


def test_plan_into_a_pipe_keeps_each_sentence_on_one_line(repo: Path) -> None:
    """`orchestrate plan | grep warning` finds whole warnings: sentences are not cut at 80
    columns (the terminal wraps them), no line ends in spaces, the table stays within 80."""
    proc = orchestrate("plan", "plan.yaml", cwd=repo, path=BIN_PATH)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(x == x.rstrip() for x in lines), lines
    warning = next(x for x in lines if "may run at the same time" in x)
    assert warning.startswith("warning: teams 'auth' and 'api'") and "depend on" in warning
    assert any(x.startswith("Timeline (max_parallel") and x.endswith("done") for x in lines)
    assert all(len(x) <= 80 for x in lines if x.startswith(("┃", "│", "┏", "└")))
