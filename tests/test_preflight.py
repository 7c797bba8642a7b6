"""Preflight: agents whose program this machine lacks are named before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import PlanError
from orchestrator.plan.load import load_plan
from orchestrator.run.preflight import missing_agents, require_agents, unseen_files
from tests.support.gitrepo import GitRepo

PLAN = f"""\
version: 1
name: pre
defaults: {{agent: here}}
agents:
  here: {{kind: command, command: [{sys.executable}, -c, "pass"]}}
  gone: {{kind: command, command: [no-such-agent-binary, --go]}}
  shelly: {{kind: command, command: "no-such-shell-tool --flag {{prompt_file}}"}}
  builtin: {{kind: command, command: "cd src && make"}}
teams:
  - {{id: a, task: x}}
  - {{id: b, task: y, agent: gone}}
  - {{id: c, task: z, agent: shelly}}
  - {{id: d, task: w, agent: builtin}}
integration: {{fixer: gone}}
"""


@pytest.fixture
def plan_file(git_repo: GitRepo) -> Path:
    path = git_repo.path / "plan.yaml"
    path.write_text(PLAN)
    return path


def test_missing_program_names_the_agent_and_its_users(plan_file: Path) -> None:
    """An argv agent whose program is not on PATH is reported with every team using it."""
    missing = missing_agents(load_plan(plan_file))
    assert [(m.agent, m.executable, m.users) for m in missing] == [
        ("gone", "no-such-agent-binary", ("b", "integration.fixer"))
    ]


def test_shell_strings_are_guessed_only_for_warnings(plan_file: Path) -> None:
    """A shell-string command is checked by its first word for `plan`'s warnings only;
    shell builtins are never reported."""
    guessed = missing_agents(load_plan(plan_file), guess_shell=True)
    assert [m.agent for m in guessed] == ["gone", "shelly"]
    assert guessed[1].executable == "no-such-shell-tool"


def test_require_agents_refuses_with_one_line_each(plan_file: Path) -> None:
    """`run` and `resume` refuse: a PlanError (exit 2) with one line per missing agent."""
    with pytest.raises(PlanError) as err:
        require_agents(load_plan(plan_file))
    assert [str(p) for p in err.value.problems] == [
        f"{plan_file}: agents.gone: executable 'no-such-agent-binary' is not on PATH "
        "(used by b, integration.fixer); install it or set agents.gone.command"
    ]
    assert err.value.exit_code == 2


UNSEEN_PLAN = """\
version: 1
name: unseen
agents:
  scripted: {kind: command, command: "python3 ./agent.py {prompt_file}", args: [--cfg=conf.toml]}
teams:
  - id: db
    task: x
    agent: scripted
    checks: [sh tools/check.sh, [python3, "{workdir}/tests/run.py"]]
integration:
  test: [sh tools/check.sh]
"""


@pytest.fixture
def unseen_repo(git_repo: GitRepo) -> GitRepo:
    git_repo.commit("tools", {"tools/check.sh": "exit 0\n", "tests/run.py": "pass\n"})
    git_repo.write(
        {
            "plan.yaml": UNSEEN_PLAN,  # the plan itself is read by orchestrate, not the teams
            "agent.py": "print('hi')\n",  # untracked
            "conf.toml": "x = 1\n",  # untracked
            "tools/check.sh": "exit 1\n",  # modified
            "notes/a.txt": "a\n",
            "notes/b.txt": "b\n",
        }
    )
    return git_repo


def test_files_the_teams_will_not_see_are_named(unseen_repo: GitRepo) -> None:
    """Untracked or uncommitted files that a command of the plan names (agent command and
    args, checks, integration test) are each one warning; then how many files in all."""
    warnings = unseen_files(load_plan(unseen_repo.path / "plan.yaml"))
    agent = "agent 'scripted' (used by db)"
    assert warnings[:4] == [
        f"{agent}: its command names 'agent.py', which is untracked: the teams' worktrees "
        "will not have it (commit it first)",
        f"{agent}: its args names 'conf.toml', which is untracked: the teams' worktrees "
        "will not have it (commit it first)",
        "team 'db': its check names 'tools/check.sh', which has uncommitted changes: the teams "
        "will see its committed version",
        "integration.test names 'tools/check.sh', which has uncommitted changes: the teams "
        "will see its committed version",
    ]
    assert warnings[4] == (
        f"5 uncommitted or untracked file(s) in {unseen_repo.path.resolve()} will not be seen "
        "by the teams, which start from a commit: agent.py, conf.toml, notes/a.txt, "
        "notes/b.txt, tools/check.sh (commit or stash them first)"
    )
    assert len(warnings) == 5


def test_a_clean_repository_gives_no_warning(unseen_repo: GitRepo) -> None:
    """Once everything is committed (the plan too), nothing is said; the state folder and
    ignored files never count."""
    unseen_repo.git("add", "--all")
    unseen_repo.git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "all")
    unseen_repo.write({".orchestrate/x": "state\n", "build/out.o": "o\n", ".gitignore": ""})
    unseen_repo.commit("ignore build", {".gitignore": "build/\n"})
    assert unseen_files(load_plan(unseen_repo.path / "plan.yaml")) == []


def test_validate_and_run_warn_on_stderr(unseen_repo: GitRepo) -> None:
    """`validate` keeps its summary alone on stdout and warns on stderr; `run` warns before
    anything else (here it then stops at the missing-agent preflight, exit 2, so the test
    starts no agent)."""
    plan = unseen_repo.path / "plan.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", str(plan)],
        cwd=unseen_repo.path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1 and ": ok: plan 'unseen'" in proc.stdout
    errs = proc.stderr.splitlines()
    assert errs[0].startswith("warning: agent 'scripted' (used by db): its command names")
    assert errs[-1].startswith("warning: 5 uncommitted or untracked file(s)")
    broken = plan.read_text().replace("python3 ./agent.py", "no-such-agent-xyz ./agent.py")
    plan.write_text(broken.replace('command: "', "command: [").replace('{prompt_file}"', "]"))
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", str(plan)],
        cwd=unseen_repo.path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert warned[-1].startswith("warning: 5 uncommitted or untracked file(s)")
    assert "no-such-agent-xyz" in proc.stderr.split(warned[-1], 1)[1]  # warnings come first
    assert not (unseen_repo.path / ".orchestrate").exists()
