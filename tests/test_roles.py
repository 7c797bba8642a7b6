"""Role profiles: the built-in ones, a repository's own, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.plan.roles import RoleError, builtin_roles, parse_profile, resolve_role
from orchestrator.resources import roles_dir

REQUIRED = {
    "backend-architect",
    "frontend-developer",
    "security-engineer",
    "devops-engineer",
    "test-engineer",
    "database-expert",
    "refactoring-expert",
    "technical-writer",
}


def test_builtin_roles_ship() -> None:
    """Every role the docs promise is shipped."""
    assert set(builtin_roles()) >= REQUIRED


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_builtin_role_is_well_formed(name: str, tmp_path: Path) -> None:
    """Each built-in profile has a name, a description and 40-80 lines of standing instructions."""
    role = resolve_role(name, tmp_path)
    assert role.name == name
    assert len(role.description) > 30
    lines = role.path.read_text().splitlines()
    assert 40 <= len(lines) <= 80
    assert "summary" in role.body.lower()
    assert role.path.parent == roles_dir()


def test_repo_profiles_win(tmp_path: Path) -> None:
    """.claude/agents/ in the repository overrides agents/ and the built-in profile."""
    (tmp_path / "agents").mkdir()
    (tmp_path / ".claude" / "agents").mkdir(parents=True)
    (tmp_path / "agents" / "test-engineer.md").write_text("---\nname: test-engineer\n---\nrepo\n")
    (tmp_path / ".claude" / "agents" / "test-engineer.md").write_text(
        "---\nname: test-engineer\ndescription: ours\ntools: Read, Edit\n---\nclaude\n"
    )
    role = resolve_role("test-engineer", tmp_path)
    assert (role.body, role.description) == ("claude", "ours")
    (tmp_path / ".claude" / "agents" / "test-engineer.md").unlink()
    assert resolve_role("test-engineer", tmp_path).body == "repo"


def test_role_found_by_front_matter_name(tmp_path: Path) -> None:
    """A Claude Code subagent file is found by the name in its front matter."""
    (tmp_path / ".claude" / "agents").mkdir(parents=True)
    (tmp_path / ".claude" / "agents" / "pay.md").write_text("---\nname: payments\n---\nBody\n")
    assert resolve_role("payments", tmp_path).path.name == "pay.md"


def test_unknown_role_names_close_match(tmp_path: Path) -> None:
    """A missing role raises an error that suggests the closest name."""
    with pytest.raises(
        RoleError, match=r"unknown role 'tester-engineer' \(did you mean 'test-engineer'\?\)"
    ):
        resolve_role("tester-engineer", tmp_path)


def test_role_name_cannot_be_a_path(tmp_path: Path) -> None:
    """A role is a name, never a path that could read files elsewhere."""
    with pytest.raises(RoleError):
        resolve_role("../../etc/passwd", tmp_path)


def test_malformed_profile(tmp_path: Path) -> None:
    """A profile without front matter is refused with its path."""
    path = tmp_path / "x.md"
    path.write_text("no front matter here\n")
    with pytest.raises(RoleError, match="no YAML front matter"):
        parse_profile(path)
    path.write_text("---\n[unclosed\n---\nbody\n")
    with pytest.raises(RoleError, match="not valid YAML"):
        parse_profile(path)
