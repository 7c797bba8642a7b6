"""The plan fields of the human in the loop: approval, setup, copy, budget.hard.

Each loads into the model, and each bad value is refused with its file, line
and field like every other plan problem.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from orchestrator.errors import PlanError, Problem
from orchestrator.plan.load import load_plan_text

PLAN = """\
version: 1
name: demo
setup:
  - npm ci
copy: [.env]
budget: {usd: 25, hard: true}
teams:
  - id: db
    task: set up the database
    approval: true
    setup:
      - [uv, sync]
    copy: [.env.local, .env]
  - id: api
    task: the api
    depends_on: [db]
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    (root / "README.md").write_text("hi\n")
    subprocess.run(["git", "-C", str(root), "add", "README.md"], check=True)
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "i"],
        check=True,
    )
    return root


def problems(repo: Path, text: str) -> list[Problem]:
    with pytest.raises(PlanError) as info:
        load_plan_text(textwrap.dedent(text), path=repo / "plan.yaml")
    return list(info.value.problems)


def test_fields_load_and_combine_plan_then_team(repo: Path) -> None:
    """approval, setup and copy load; a team's set-up and copies follow the plan's."""
    plan = load_plan_text(PLAN, path=repo / "plan.yaml").plan
    db, api = plan.teams
    assert db.approval and not api.approval
    assert plan.setup_commands(db) == ("npm ci", ("uv", "sync"))
    assert plan.setup_commands(api) == ("npm ci",)
    assert plan.copies(db) == (".env", ".env.local")  # once each, plan first
    assert plan.copies(api) == (".env",)
    assert plan.budget is not None and plan.budget.hard


def test_budget_is_soft_unless_said() -> None:
    """Without hard:, a budget asks (pauses) instead of killing agents."""
    from orchestrator.plan.models import Budget

    assert Budget(usd=5).hard is False


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ("/etc/passwd", "absolute path"),
        ("../secrets.env", "outside the repository"),
        (".git/config", "inside .git/"),
        ("''", "at least 1 character"),
    ],
)
def test_copy_outside_the_checkout_is_refused_at_its_line(
    repo: Path, item: str, words: str
) -> None:
    """A copied file must be a path of the user's checkout: refused where it is written."""
    text = PLAN.replace("copy: [.env.local, .env]", f"copy: [.env.local, {item}]")
    found = problems(repo, text)
    assert len(found) == 1, [str(p) for p in found]
    p = found[0]
    assert p.where == "teams[0].copy[1]"
    assert p.line == 13
    assert words in p.message


def test_top_level_copy_is_checked_too(repo: Path) -> None:
    """The plan's own copy: list is checked like a team's."""
    found = problems(repo, PLAN.replace("copy: [.env]", "copy: [../x]"))
    assert [(p.where, p.line) for p in found] == [("copy[0]", 5)]


@pytest.mark.parametrize(
    ("old", "new", "where", "line"),
    [
        ("approval: true", "approval: maybe", "teams[0].approval", 10),
        ("  - npm ci", "  - 42", "setup[0]", 4),
        ("{usd: 25, hard: true}", "{usd: 25, hard: sometimes}", "budget.hard", 6),
        ("      - [uv, sync]", "      - {run: uv}", "teams[0].setup[0]", 12),
    ],
)
def test_bad_values_are_refused_with_their_place(
    repo: Path, old: str, new: str, where: str, line: int
) -> None:
    """A wrong type in a new field is one problem at its field and line."""
    found = problems(repo, PLAN.replace(old, new))
    assert [(p.where, p.line) for p in found] == [(where, line)], [str(p) for p in found]


def test_misspelt_field_suggests_it(repo: Path) -> None:
    """`aproval:` is an unknown key with a suggestion, like any other."""
    found = problems(repo, PLAN.replace("approval: true", "aproval: true"))
    assert len(found) == 1
    assert "did you mean 'approval'" in found[0].message
