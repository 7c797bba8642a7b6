"""Each class of plan error is reported with its file, line, column and field."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from orchestrator.errors import PlanError, Problem
from orchestrator.plan.load import LoadedPlan, load_plan, load_plan_text

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}

GOOD = """\
version: 1
name: demo
base: main
teams:
  - id: db
    task: set up the database
    deliverables: [src/db.py]
  - id: auth
    task: authentication
    depends_on: [db]
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    git(root, "init", "-q", "--initial-branch=main")
    (root / "README.md").write_text("hello\n")
    git(root, "add", "README.md")
    git(root, "commit", "-q", "-m", "init")
    return root


def problems(repo: Path, text: str, *, name: str = "plan.yaml") -> list[Problem]:
    with pytest.raises(PlanError) as info:
        load_plan_text(textwrap.dedent(text), path=repo / name)
    return list(info.value.problems)


def one(repo: Path, text: str) -> Problem:
    found = problems(repo, text)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def test_valid_plan_loads(repo: Path) -> None:
    """A good plan loads into a LoadedPlan with its repo root, text and hash."""
    (repo / "plan.yaml").write_text(GOOD)
    loaded = load_plan(repo / "plan.yaml")
    assert isinstance(loaded, LoadedPlan)
    assert loaded.repo_root == repo.resolve()
    assert loaded.text == GOOD
    assert len(loaded.sha256) == 64
    assert [t.id for t in loaded.plan.teams] == ["db", "auth"]


def test_yaml_syntax_error_has_line(repo: Path) -> None:
    """Broken YAML is reported at the line where the parser gave up."""
    p = one(repo, "version: 1\nname: demo\nteams: [\n  {id: a, task: x\n")
    assert p.line == 5
    assert "invalid YAML" in p.message


def test_wrong_type_points_at_value(repo: Path) -> None:
    """A value of the wrong type names its field, line and column."""
    p = one(repo, GOOD.replace("base: main", "base: main\nmax_parallel: lots"))
    assert (p.where, p.line, p.column) == ("max_parallel", 4, 15)
    assert "valid integer" in p.message and "'lots'" in p.message


def test_unknown_key_suggests_the_right_one(repo: Path) -> None:
    """A misspelt key is refused at the key itself, with a suggestion."""
    p = one(
        repo, GOOD.replace("    depends_on: [db]", "    depends_on: [db]\n    deliverable: [x]")
    )
    assert (p.where, p.line, p.column) == ("teams[1].deliverable", 11, 5)
    assert p.message == "unknown key 'deliverable' (did you mean 'deliverables'?)"


def test_missing_required_key(repo: Path) -> None:
    """A team without a task is reported at that team."""
    p = one(repo, GOOD.replace("    task: authentication\n", ""))
    assert (p.where, p.line) == ("teams[1].task", 8)
    assert p.message == "missing required key 'task'"


def test_duplicate_team_id(repo: Path) -> None:
    """A second team with the same id is reported at its id."""
    p = one(repo, GOOD.replace("  - id: auth", "  - id: db").replace("[db]", "[]"))
    assert (p.where, p.line, p.column) == ("teams[1].id", 8, 9)
    assert p.message == "duplicate team id 'db' (also teams[0])"


def test_invalid_team_id(repo: Path) -> None:
    """Team ids are letters, digits, '-' and '_' only."""
    p = one(repo, GOOD.replace("  - id: auth", "  - id: auth team").replace("[db]", "[db]"))
    assert (p.where, p.line) == ("teams[1].id", 8)
    assert "letters, digits" in p.message


def test_unknown_dependency_suggests_close_match(repo: Path) -> None:
    """A depends_on naming no team is reported at that name, with a suggestion."""
    p = one(repo, GOOD.replace("depends_on: [db]", "depends_on: [dbb]"))
    assert str(p) == (
        f"{repo / 'plan.yaml'}:10:18: teams[1].depends_on: unknown team 'dbb' (did you mean 'db'?)"
    )


def test_cycle_is_printed(repo: Path) -> None:
    """A dependency cycle is printed as a chain, at the first team's depends_on."""
    text = GOOD.replace("    deliverables: [src/db.py]", "    depends_on: [auth]")
    p = one(repo, text)
    assert (p.where, p.line) == ("teams[0].depends_on", 7)
    assert p.message == "dependency cycle: db -> auth -> db"


def test_self_dependency(repo: Path) -> None:
    """A team that depends on itself is refused."""
    p = one(repo, GOOD.replace("depends_on: [db]", "depends_on: [auth]"))
    assert (p.where, p.line) == ("teams[1].depends_on", 10)
    assert p.message == "team 'auth' depends on itself"


@pytest.mark.parametrize(
    ("deliverable", "words"),
    [
        ("/etc/passwd", "absolute path"),
        ("../outside.py", "outside the repository ('..')"),
        ("src/../../x", "outside the repository ('..')"),
        (".git/config", "inside .git/"),
    ],
)
def test_deliverable_outside_repo(repo: Path, deliverable: str, words: str) -> None:
    """Deliverables must stay inside the repository."""
    p = one(repo, GOOD.replace("[src/db.py]", f"['{deliverable}']"))
    assert (p.where, p.line, p.column) == ("teams[0].deliverables[0]", 7, 20)
    assert words in p.message


def test_deliverable_through_symlink_out(repo: Path, tmp_path: Path) -> None:
    """A deliverable under a symlink that leads out of the repository is refused."""
    link = repo / "elsewhere"
    if not link.is_symlink():
        link.symlink_to(tmp_path)
    try:
        p = one(repo, GOOD.replace("[src/db.py]", "['elsewhere/*.py']"))
    finally:
        link.unlink()
    assert (p.where, p.line) == ("teams[0].deliverables[0]", 7)
    assert "through a symlink" in p.message


def test_unknown_agent(repo: Path) -> None:
    """Team agents and integration agents must be built-in kinds or agents: entries."""
    text = GOOD + "    agent: claude\nintegration:\n  resolver: codexx\n"
    found = problems(repo, text)
    assert [(p.where, p.line) for p in found] == [
        ("teams[1].agent", 11),
        ("integration.resolver", 13),
    ]
    assert found[0].message.startswith("unknown agent 'claude' (did you mean 'claude-code'?)")
    assert found[1].message.startswith("unknown agent 'codexx' (did you mean 'codex'?)")


def test_agents_entry_needs_kind(repo: Path) -> None:
    """A named agent that is not a built-in kind must say its kind."""
    text = GOOD.replace("teams:", "agents:\n  mine:\n    command: run-me\nteams:")
    p = one(repo, text)
    assert (p.where, p.line) == ("agents.mine", 6)
    assert "set kind:" in p.message


def test_unknown_role(repo: Path) -> None:
    """A role must resolve to a profile; a close built-in name is suggested."""
    p = one(
        repo, GOOD.replace("    task: authentication", "    task: a\n    role: backend-architekt")
    )
    assert (p.where, p.line) == ("teams[1].role", 10)
    assert "unknown role 'backend-architekt' (did you mean 'backend-architect'?)" in p.message


def test_repo_role_from_claude_agents(repo: Path, tmp_path: Path) -> None:
    """A repository's .claude/agents/<role>.md is a valid role."""
    agents = repo / ".claude" / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    (agents / "payments-expert.md").write_text("---\nname: payments-expert\n---\nBe careful.\n")
    try:
        text = GOOD.replace("    task: authentication", "    task: a\n    role: payments-expert")
        load_plan_text(text, path=repo / "plan.yaml")
    finally:
        (agents / "payments-expert.md").unlink()


def test_bad_duration(repo: Path) -> None:
    """Durations are 90s, 30m, 2h: anything else is refused with an example."""
    p = one(repo, GOOD.replace("    task: authentication", "    task: a\n    timeout: 5 minutes"))
    assert (p.where, p.line) == ("teams[1].timeout", 10)
    assert "not a duration such as 90s, 30m or 2h" in p.message


def test_repo_not_git(repo: Path, tmp_path: Path) -> None:
    """The repo must be a git repository."""
    (tmp_path / "plain").mkdir()
    p = one(tmp_path, GOOD.replace("base: main", "repo: plain"))
    assert (p.where, p.line) == ("repo", 3)
    assert "is not a git repository" in p.message


def test_repo_missing(repo: Path, tmp_path: Path) -> None:
    """The repo must exist."""
    p = one(tmp_path, GOOD.replace("base: main", "repo: nowhere"))
    assert (p.where, p.line) == ("repo", 3)
    assert "no such directory" in p.message


def test_base_branch_missing(repo: Path) -> None:
    """The base branch must exist in the repository."""
    p = one(repo, GOOD.replace("base: main", "base: mian"))
    assert (p.where, p.line, p.column) == ("base", 3, 7)
    assert p.message.startswith("no branch or commit 'mian'")


def test_every_problem_in_one_pass(repo: Path) -> None:
    """Several problems of different classes are all reported, sorted by line."""
    text = (
        GOOD.replace("base: main", "base: nope")
        .replace("[src/db.py]", "[/abs]")
        .replace("[db]", "[dbx]")
        .replace("name: demo", "name: demo\ncolour: blue")
    )
    found = problems(repo, text)
    assert [p.line for p in found] == [3, 4, 8, 11]
    assert [p.where for p in found] == [
        "colour",
        "base",
        "teams[0].deliverables[0]",
        "teams[1].depends_on",
    ]


def test_duplicate_yaml_key(repo: Path) -> None:
    """YAML would silently keep the last of two equal keys; we refuse it."""
    p = one(repo, GOOD.replace("name: demo", "name: demo\nname: other"))
    assert (p.line, p.message) == (3, "duplicate key 'name'")


def test_not_utf8(repo: Path, tmp_path: Path) -> None:
    """A binary file is refused as not UTF-8 text."""
    (tmp_path / "plan.yaml").write_bytes(b"version: 1\n\xff\xfe")
    with pytest.raises(PlanError) as info:
        load_plan(tmp_path / "plan.yaml")
    assert "not UTF-8" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    """A plan path that does not exist gives one clear problem."""
    with pytest.raises(PlanError) as info:
        load_plan(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: no such file"


def test_check_repo_false_skips_git(tmp_path: Path) -> None:
    """With check_repo=False a plan outside any repository still loads."""
    loaded = load_plan_text(GOOD, path=tmp_path / "plan.yaml", check_repo=False)
    assert loaded.repo_root == tmp_path.resolve()
