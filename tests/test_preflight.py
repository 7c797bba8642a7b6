"""Preflight: agents whose program this machine lacks are named before anything runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from orchestrator.errors import PlanError
from orchestrator.planload import load_plan
from orchestrator.preflight import missing_agents, require_agents
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
